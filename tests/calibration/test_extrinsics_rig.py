"""Rig calibration on projected boards: degenerate and missing views, outliers, world frames, synchronisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.calibration.board import BoardConfig, object_points
from pipeline.calibration.covisibility import Observations, covisibility, synchronise, tree_order
from pipeline.calibration.extrinsics import RigOptions, calibrate_rig, free_mask
from pipeline.calibration.rig_init import ViewCheck, board_view_poses, collinear, robust_relative_pose
from pipeline.calibration.rig_report import build_report
from pipeline.errors import PosecapError
from tests.calibration.extrinsics_synthetic import rig_errors, ring_rig, similarity_align, sweep


@pytest.fixture(scope="module")
def ring():
    rig = ring_rig(4, seed=2)
    return rig, sweep(rig, 48, noise_px=0.15, seed=3)


def with_corners(sw, corners: np.ndarray) -> Observations:
    return Observations(sw.obs.cameras, sw.obs.frames, corners, sw.obs.image_sizes)


def test_degenerate_views_dropped_and_counted(ring):
    rig, sw = ring
    corners = sw.obs.corners.copy()
    seen = np.isfinite(corners).all(axis=(2, 3))
    c, f = np.argwhere(seen)[0]
    corners[c, f, 5:] = np.nan  # too few corners
    c2, f2 = np.argwhere(seen)[1]
    corners[c2, f2, 9:] = np.nan  # one row only: collinear
    # an edge-on board: project a board turned 88 degrees away from camera 0's line of sight
    cam = rig.cameras[0]
    f3 = int(np.flatnonzero(~seen[0])[0])
    obj = object_points(sw.board).astype(float)
    centre_w = cam.center_world + 1.5 * cam.R[2]
    R_bw = cam.R.T @ cv2.Rodrigues(np.array([0.0, np.radians(88), 0.0]))[0]
    pts = (obj - obj.mean(axis=0)) @ R_bw.T + centre_w
    corners[0, f3] = cam.project(pts)
    obs = with_corners(sw, corners)
    cal = calibrate_rig(obs, sw.intrinsics(), obj, RigOptions())
    reasons = {(d["camera"], d["frame"]): d["reason"] for d in cal.dropped}
    assert reasons[(rig.names[c], int(f))] == "too_few_corners"
    assert reasons[(rig.names[c2], int(f2))] == "collinear"
    assert reasons[(rig.names[0], f3)] == "edge_on"
    report = build_report(cal, "extrinsics", sw.board.as_yaml(), {n: 1 for n in rig.names})
    counts = report["dropped_views"]["counts"]
    assert counts["too_few_corners"] == 1 and counts["collinear"] == 1
    assert counts["edge_on"] == sum(d["reason"] == "edge_on" for d in cal.dropped) >= 1
    err = rig_errors(cal.rig, rig)
    assert err["centre_mm"].max() < 10 and err["rotation_deg"].max() < 0.2


def test_camera_never_covisible_is_named(ring):
    rig, sw = ring
    corners = sw.obs.corners.copy()
    seen = np.isfinite(corners).all(axis=(2, 3))
    others = seen[[0, 1, 3]].any(axis=0)
    corners[2, others] = np.nan  # cam2 keeps only the frames nobody else sees
    with pytest.raises(PosecapError, match=r"camera cam2 never sees the board at the same time as another camera"):
        calibrate_rig(with_corners(sw, corners), sw.intrinsics(), object_points(sw.board), RigOptions())


def test_unlinked_groups_are_named():
    valid = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)
    with pytest.raises(PosecapError, match=r"cameras c2, c3 never see the board together with cameras c0, c1"):
        covisibility(valid, ["c0", "c1", "c2", "c3"])


def test_spanning_tree_is_maximal():
    valid = np.zeros((4, 30), bool)
    valid[0, :20] = valid[1, :20] = True  # 0-1: 20
    valid[1, 20:25] = valid[2, 20:25] = True  # 1-2: 5
    valid[0, 25:28] = valid[2, 25:28] = True  # 0-2: 3
    valid[2, 28:30] = valid[3, 28:30] = True  # 2-3: 2
    g = covisibility(valid, ["a", "b", "c", "d"])
    assert sorted(tuple(sorted(e)) for e in g.tree) == [(0, 1), (1, 2), (2, 3)]
    assert tree_order(g, 3) == [(3, 2), (2, 1), (1, 0)]
    assert g.as_yaml()["edges"][0] == {"cameras": ["a", "b"], "frames": 20, "spanning_tree": True}


def test_missing_views_and_gross_outliers(ring):
    rig, sw = ring
    rng = np.random.default_rng(7)
    corners = sw.obs.corners.copy()
    seen = np.isfinite(corners).all(axis=(2, 3))
    drop = np.argwhere(seen)[rng.choice(int(seen.sum()), 10, replace=False)]
    for c, f in drop:
        corners[c, f] = np.nan  # missing views
    seen = np.isfinite(corners).all(axis=-1)
    idx = np.argwhere(seen)
    bad = idx[rng.choice(len(idx), 40, replace=False)]
    corners[bad[:, 0], bad[:, 1], bad[:, 2]] += rng.normal(0, 8.0, (40, 2))  # gross corner errors
    cal = calibrate_rig(with_corners(sw, corners), sw.intrinsics(), object_points(sw.board), RigOptions())
    assert (~cal.inlier).sum() >= 30
    flagged = {(int(cal.obs_cam[m]), int(cal.obs_frame[m]), int(cal.obs_corner[m]))
               for m in np.flatnonzero(~cal.inlier)}
    big = {tuple(int(v) for v in b) for b in bad}
    assert len(flagged & big) >= 30
    err = rig_errors(cal.rig, rig)
    assert err["centre_mm"].max() < 10 and err["rotation_deg"].max() < 0.2
    assert max(cal.rms_px.values()) < 0.5


def test_floor_board_world():
    rig = ring_rig(4, seed=5)
    sw = sweep(rig, 40, noise_px=0.15, seed=6)
    board = sw.board
    obj = object_points(board).astype(float)
    # the board lies on the floor, printed side up: board x = world x, board y = -world y, z down
    R_floor = np.diag([1.0, -1.0, -1.0])
    uv = rig.project(obj @ R_floor.T)  # corner 0 at the world origin
    corners = np.concatenate([sw.obs.corners, uv[:, None]], axis=1)
    frames = np.append(sw.obs.frames, 1000)
    obs = Observations(sw.obs.cameras, frames, corners, sw.obs.image_sizes)
    cal = calibrate_rig(obs, sw.intrinsics(), obj, RigOptions(world="floor_board", floor_frame=1000,
                                                               reference="cam2"))
    assert cal.rig.world == "floor_board"
    centre_err = np.linalg.norm(cal.rig.centers - rig.centers, axis=1) * 1000  # no alignment
    assert centre_err.max() < 15, centre_err
    tr = np.einsum("cij,cij->c", cal.rig.R, rig.R)
    assert np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1))).max() < 0.3
    with pytest.raises(PosecapError, match="floor_frame 5000"):
        calibrate_rig(obs, sw.intrinsics(), obj, RigOptions(world="floor_board", floor_frame=5000))


def test_reference_camera_is_the_world(ring):
    _, sw = ring
    cal = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(reference="cam1"))
    assert cal.rig.world == "cam1"
    np.testing.assert_allclose(cal.rig.camera("cam1").R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cal.rig.camera("cam1").t, 0, atol=1e-12)
    with pytest.raises(PosecapError, match="reference camera 'nope'"):
        calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(reference="nope"))


def test_free_mask():
    m = free_mask(["a", "b"], {"*": ["fx", "fy"], "b": ["k1"]})
    assert m[0].nonzero()[0].tolist() == [0, 1] and m[1].nonzero()[0].tolist() == [4]
    with pytest.raises(PosecapError, match="unknown parameter"):
        free_mask(["a"], {"a": ["f"]})
    with pytest.raises(PosecapError, match="names camera 'z'"):
        free_mask(["a"], {"z": ["fx"]})


def test_synchronise_uses_offsets_and_rates():
    n = 4
    c = np.arange(3 * n * 2, dtype=float).reshape(3, n, 2)
    obs = synchronise({"a": (np.array([0, 1, 2]), c), "b": (np.array([0, 2, 4]), c + 100)},
                      {"a": (30.0, 0.0), "b": (60.0, 1 / 30)}, {"a": (10, 10), "b": (10, 10)}, n)
    # b's frame 0 is a's frame 1 (1/30 s later), b's frames 2 and 4 are a's 2 and 3
    assert obs.frames.tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(obs.corners[0, 1], c[1])
    np.testing.assert_array_equal(obs.corners[1, 1], c[0] + 100)
    assert obs.source_frames[1].tolist() == [-1, 0, 2, 4]


def test_view_checks_and_relative_pose(ring):
    rig, sw = ring
    assert collinear(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]]))
    assert not collinear(object_points(BoardConfig()))
    poses = board_view_poses(sw.obs, [c.K for c in rig.cameras], [c.dist for c in rig.cameras],
                             object_points(sw.board).astype(float), ViewCheck())
    both = poses.valid[0] & poses.valid[1]
    Rba, tba, n = robust_relative_pose(poses.R[0, both], poses.t[0, both], poses.R[1, both], poses.t[1, both])
    true_R = rig.cameras[1].R @ rig.cameras[0].R.T
    assert np.degrees(np.arccos(np.clip((np.trace(Rba.T @ true_R) - 1) / 2, -1, 1))) < 1.0
    assert n >= 1


def test_similarity_alignment_helper():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 3))
    R = cv2.Rodrigues(np.array([0.3, -0.2, 0.5]))[0]
    s, R2, t2 = similarity_align(pts, 2.0 * pts @ R.T + [1, 2, 3])
    assert abs(s - 2) < 1e-9 and np.allclose(R2, R) and np.allclose(t2, [1, 2, 3])
