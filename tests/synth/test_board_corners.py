"""Rendering agrees with geometry: detected board corners match the ground-truth projections."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.synth.board import BoardRenderer, BoardSpec, corners_world
from pipeline.synth.mosaic import split
from tests.synth.conftest import read_video

CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-4)


def detect(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """findChessboardCorners + cornerSubPix with a window matched to the square size: (N, 2) or None."""
    ok, corners = cv2.findChessboardCorners(gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH
                                            | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    grid = corners.reshape(pattern[1], pattern[0], 2)
    spacing = min(np.linalg.norm(np.diff(grid, axis=0), axis=2).min(),
                  np.linalg.norm(np.diff(grid, axis=1), axis=2).min())
    win = int(np.clip(np.floor(0.4 * spacing), 1, 5))
    return cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), CRITERIA).reshape(-1, 2)


def corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance, allowing OpenCV's 180°-ambiguous ordering (reversed corner list)."""
    return float(min(np.nanmean(np.linalg.norm(found - truth, axis=1)),
                     np.nanmean(np.linalg.norm(found[::-1] - truth, axis=1))))


def test_detected_corners_match_ground_truth_on_recorded_video(calib_dir, calib_gt, calib_scene):
    pattern = tuple(int(v) for v in calib_gt.boards["inner_corners"])
    errors, per_camera = [], {}
    for recording in ("intrinsics", "extrinsics"):
        for path, layout in calib_gt.mosaics.items():
            if calib_gt.recordings[path]["recording"] != recording:
                continue
            video = read_video(calib_dir / path)
            for i in range(0, len(video), 2):
                for cam, tile in split(video[i], layout).items():
                    truth = calib_gt.boards[f"corners_{recording}_{cam}"][i]
                    if not np.isfinite(truth).all():
                        continue
                    found = detect(cv2.cvtColor(tile, cv2.COLOR_BGR2GRAY), pattern)
                    if found is not None:
                        errors.append(corner_error(found, truth))
                        per_camera[cam] = per_camera.get(cam, 0) + 1
    assert set(per_camera) == set(calib_gt.cameras), f"no detections in some cameras: {per_camera}"
    assert len(errors) >= 60, f"only {len(errors)} boards detected"
    assert np.mean(errors) < 0.3, f"mean disagreement {np.mean(errors):.3f} px over {len(errors)} boards"
    assert np.percentile(errors, 95) < 0.5


def test_ray_cast_board_matches_projection_without_noise(calib_scene):
    """A clean, distortion-heavy render: sub-pixel corners agree with projection to < 0.1 px."""
    from pipeline.synth.board import BoardPose
    from pipeline.synth.camera import CameraModel

    spec = BoardSpec()
    cam = calib_scene.cameras["cam0"]
    cam = CameraModel("test", cam.image_size, cam.K, np.array([-0.3, 0.08, 1e-3, -1e-3, 0.0]), cam.R, cam.t)
    target = cam.center_world + 0.7 * (cam.R.T @ np.array([0.15, 0.1, 1.0]))
    R = cam.R.T @ cv2.Rodrigues(np.array([0.3, -0.25, 0.1]))[0]
    pose = BoardPose(R, target - R @ spec.center_m())
    value, hit, _ = BoardRenderer.create(spec).render(cam.pixel_rays_world(2), cam.center_world, pose)
    w, h = cam.image_size
    img = np.where(hit, 0.1 + 0.8 * value, 0.5).reshape(h, 2, w, 2).mean(axis=(1, 3))
    gray = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    found = detect(gray, spec.inner_corners)
    assert found is not None
    truth = cam.project(corners_world(spec, pose))
    assert corner_error(found, truth) < 0.1
