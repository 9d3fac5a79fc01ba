"""The parts of calibrate_intrinsics: board orientation, detection, diagnosis, selection, solver, models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.calibration import detect
from pipeline.calibration.board import BoardConfig, object_points
from pipeline.calibration.board_diagnosis import candidate_boards, diagnose
from pipeline.calibration.detect import (
    Detections,
    FrameDetector,
    canonical_orientation,
    detect_video,
    segments,
)
from pipeline.calibration.intrinsics import calibrate, ray_error_px, undistortion_error_px
from pipeline.calibration.select import coverage_score, select_frames
from tests.calibration.conftest import camera
from tests.calibration.render import random_poses, render, render_sweep


def views_of(cam, board, n, seed, noise_px=0.05):
    """Exact projections of ``n`` random full views plus Gaussian noise: (obj list, img list, poses)."""
    rng = np.random.default_rng(seed)
    poses = random_poses(cam, board, n, rng, tries=3)
    obj = object_points(board).astype(float)
    img = [cam.project(obj, r, t) + rng.normal(0, noise_px, (len(obj), 2)) for r, t in poses]
    return [obj] * n, img, poses


@pytest.mark.parametrize("roll", [0.0, np.pi / 2, np.pi, -2.5])
@pytest.mark.parametrize("size", [(9, 6), (9, 7), (7, 7)])
def test_orientation_is_consistent_across_views(size, roll):
    board = BoardConfig(inner_corners=size)
    cam = camera("pinhole5")
    rvec = np.array([0.25, -0.2, roll])
    centre = np.array([(size[0] - 1) * 0.02, (size[1] - 1) * 0.02, 0.0])
    t = np.array([0.0, 0.0, 0.75]) - cv2.Rodrigues(rvec)[0] @ centre
    gray = render(cam, board, rvec, t, ss=1)
    corners, _ = FrameDetector(board)(gray)
    truth = cam.project(object_points(board), rvec, t)
    grid = truth.reshape(size[1], size[0], 2)
    if (size[0] + size[1]) % 2 == 0:  # symmetric pattern: x must point right in the image
        turns = [grid, grid[::-1, ::-1]] + (
            [np.rot90(grid, 1), np.rot90(grid, 3)] if size[0] == size[1] else []
        )
        grid = max(turns, key=lambda g: (g[:, -1] - g[:, 0]).mean(axis=0)[0])
    np.testing.assert_allclose(corners, grid.reshape(-1, 2), atol=0.3)
    if (size[0] + size[1]) % 2 == 1:  # colour decides, whatever labelling OpenCV returned
        for relabel in (grid[::-1], grid[:, ::-1], grid[::-1, ::-1]):
            np.testing.assert_allclose(canonical_orientation(relabel, gray), grid)


def test_segments_cover_every_frame_once():
    assert segments(1000, 1, 1) == [(0, None)]
    runs = segments(1000, 3, 2)
    assert runs[0][0] == 0 and runs[-1][1] is None and all(a % 3 == 0 for a, _ in runs)
    assert all(b == c for (_, b), (c, _) in zip(runs, runs[1:]))


def test_pool_detection_equals_in_process(checker_sweep, monkeypatch):
    monkeypatch.setattr(detect, "MIN_SEGMENT", 4)  # several runs even on a 40-frame video
    assert len(segments(40, 3, 2)) > 2
    inline = detect_video(checker_sweep.video, checker_sweep.board, stride=3, workers=1, progress=False)
    pooled = detect_video(checker_sweep.video, checker_sweep.board, stride=3, workers=2, progress=False)
    assert inline.frames_scanned == pooled.frames_scanned == 14
    np.testing.assert_array_equal(inline.frame_index, pooled.frame_index)
    np.testing.assert_array_equal(inline.corners, pooled.corners)
    assert set(inline.frame_index.tolist()) <= set(range(0, 40, 3))


def test_charuco_partial_views_are_kept(charuco_sweep):
    det = detect_video(charuco_sweep.video, charuco_sweep.board, stride=4, workers=1, progress=False)
    seen = np.isfinite(det.corners).all(axis=2)
    assert det.n_frames >= 8 and (seen.sum(axis=1) < 54).any(), "expected partial ChArUco views"
    for k, frame in enumerate(det.frame_index):
        r, t = charuco_sweep.poses[frame]
        truth = charuco_sweep.camera.project(object_points(charuco_sweep.board), r, t)
        err = np.linalg.norm(det.corners[k][seen[k]] - truth[seen[k]], axis=1)
        assert np.median(err) < 0.15, (frame, err)


def test_selection_rejects_blur_and_skips_duplicates():
    cam, board = camera("pinhole5"), BoardConfig()
    _, img, _ = views_of(cam, board, 40, seed=11)
    corners = np.stack(img[:30] + [img[0] + 0.01 * k for k in range(60)]).astype(np.float32)  # 60 near-copies
    sharp = np.full(len(corners), 1000.0, np.float32)
    sharp[[3, 7]] = 50.0
    det = Detections(np.arange(len(corners)), corners, sharp, cam.size, len(corners))
    sel = select_frames(det, board, max_frames=20, blur_min_relative=0.35)
    assert sel.reason[3] == sel.reason[7] == "blurred"
    assert len(sel.selected) == 20 and not {3, 7} & set(sel.selected.tolist())
    assert sum(1 for i in sel.selected if i == 0 or i >= 30) <= 2, "near-duplicates were chosen"
    assert coverage_score(corners[sel.selected], cam.size) >= coverage_score(corners[:20], cam.size)
    assert np.nanmax(sel.tilt_deg[sel.selected]) > 25


def test_outlier_views_and_corners_are_dropped():
    cam, board = camera("pinhole5"), BoardConfig()
    obj, img, _ = views_of(cam, board, 24, seed=5)
    img[4] = img[4] + np.random.default_rng(1).normal(0, 1.5, img[4].shape)  # a smeared view
    img[9][10] += [2.0, -1.5]  # one bad corner
    result = calibrate(obj, img, cam.size, "pinhole5")
    assert 4 in result.outliers and 4 not in result.used
    assert result.corners_dropped >= 1
    sol = result.solution
    assert sol.rms < 0.1
    assert abs(sol.K[0, 0] / cam.K[0, 0] - 1) < 0.002


def test_outlier_rule_keeps_min_frames():
    cam, board = camera("pinhole5"), BoardConfig()
    obj, img, _ = views_of(cam, board, 9, seed=6, noise_px=0.5)
    for k in range(3):
        img[k] = img[k] + np.random.default_rng(k).normal(0, 3.0, img[k].shape)
    result = calibrate(obj, img, cam.size, "pinhole5", min_frames=8)
    assert result.used.size == 8


@pytest.mark.parametrize("model", ["rational8", "fisheye"])
def test_other_models_recover_the_camera(model):
    cam, board = camera(model), BoardConfig()
    obj, img, _ = views_of(cam, board, 30, seed=8)
    sol = calibrate(obj, img, cam.size, model).solution
    assert sol.dist.shape == ({"rational8": 8, "fisheye": 4}[model],)
    assert sol.rms < 0.1
    assert np.max(np.abs(np.diag(sol.K)[:2] / np.diag(cam.K)[:2] - 1)) < 0.005
    assert np.max(np.abs(sol.K[:2, 2] - cam.K[:2, 2])) < 3
    if model == "rational8":
        assert (
            undistortion_error_px(model, sol.K, sol.dist, cam.K, cam.dist, cam.size, border_px=40).max() < 0.5
        )
    else:  # fisheye: compare ray angles over the part of the image the board reached
        errors = ray_error_px(model, sol.K, sol.dist, cam.K, cam.dist, cam.size, angular=True, border_px=60)
        assert errors.max() < 0.5


def test_fisheye_stage_path_on_rendered_frames(tmp_path):
    cam, board = camera("fisheye"), BoardConfig()
    video, _ = render_sweep(tmp_path / "fish.mkv", cam, board, 20, seed=3)
    det = detect_video(video, board, workers=1, progress=False)
    assert det.n_frames >= 10
    obj = object_points(board)
    sol = calibrate([obj] * det.n_frames, list(det.corners), cam.size, "fisheye").solution
    assert sol.rms < 0.3
    assert abs(sol.K[0, 0] / cam.K[0, 0] - 1) < 0.005


def test_candidate_boards_cover_the_usual_mistakes():
    board = BoardConfig(inner_corners=(9, 6))
    found = {(c.type, c.inner_corners): label for c, label in candidate_boards(board, ["DICT_4X4_50"])}
    assert found[("checkerboard", (6, 9))] == "rows and columns swapped"
    assert found[("checkerboard", (8, 5))] == "squares counted instead of inner corners"
    assert found[("checkerboard", (10, 6))] == "off by one"
    assert found[("charuco", (9, 6))] == "a ChArUco board, not a plain checkerboard"
    assert ("checkerboard", (9, 6)) not in found


def test_diagnosis_finds_the_charuco_dictionary(charuco_sweep):
    wrong = BoardConfig(type="charuco", aruco_dict="DICT_5X5_100")
    diagnosis = diagnose(charuco_sweep.video, wrong, samples=8)
    assert diagnosis.configured.hits == 0
    assert diagnosis.best is not None and diagnosis.best.board.aruco_dict == "DICT_4X4_50"
    assert "aruco_dict: DICT_4X4_50" in diagnosis.hint()


def test_diagnosis_spots_a_charuco_board_configured_as_checkerboard(charuco_sweep):
    hint = diagnose(charuco_sweep.video, BoardConfig(), samples=8).hint()
    assert "a ChArUco board, not a plain checkerboard" in hint and "type: charuco" in hint


def test_auto_stride_examines_at_most_scan_frames(checker_sweep):
    from pipeline.calibration.camera_job import Settings, effective_stride
    from pipeline.calibration.detect import open_video

    cap, _, count = open_video(checker_sweep.video)
    cap.release()
    assert effective_stride(checker_sweep.video, Settings(stride=0)) == 1  # short sweep: every frame
    stride = effective_stride(checker_sweep.video, Settings(stride=0, scan_frames=7))
    assert stride == -(-count // 7) and -(-count // stride) <= 7 < -(-count // (stride - 1))
    assert effective_stride(checker_sweep.video, Settings(stride=5)) == 5  # explicit wins
