"""Stereo pairs on projected boards: baseline, rectification, the artifact and the check picture."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration.board import object_points
from pipeline.calibration.stereo import calibrate_pair, check_image, pair_name, stereo_views
from tests.calibration.extrinsics_synthetic import ring_rig, sweep


@pytest.fixture(scope="module")
def pair():
    rig = ring_rig(2, stereo=True, seed=3)
    sw = sweep(rig, 40, noise_px=0.2, seed=9, group=3)
    a, b = rig.names.index("stereo_l"), rig.names.index("stereo_r")
    usable = np.isfinite(sw.obs.corners[a]).all(axis=(1, 2)) & np.isfinite(sw.obs.corners[b]).all(axis=(1, 2))
    views = stereo_views(sw.obs.corners[a], sw.obs.corners[b], usable, sw.obs.frames,
                         object_points(sw.board).astype(float), 8)
    ca, cb = rig.camera("stereo_l"), rig.camera("stereo_r")
    res = calibrate_pair(views, ("stereo_l", "stereo_r"), ca.image_size, ca.K, ca.dist, cb.K, cb.dist)
    return rig, sw, views, res


def test_baseline_and_rectification(pair):
    rig, _, views, res = pair
    assert views.n_views >= 5
    ca, cb = rig.camera("stereo_l"), rig.camera("stereo_r")
    true_mm = np.linalg.norm(ca.center_world - cb.center_world) * 1000
    assert abs(res.baseline_mm - true_mm) < 1.0, (res.baseline_mm, true_mm)
    R_true = cb.R @ ca.R.T
    assert np.degrees(np.arccos(np.clip((np.trace(res.R.T @ R_true) - 1) / 2, -1, 1))) < 0.2
    assert res.mean_rect_error_px < 0.5 and not res.vertical
    assert res.rms_px < 0.5


def test_artifact_fields(pair):
    _, _, views, res = pair
    body = res.as_yaml({"baseline_mm_rig": 120.0})
    for key in ("R", "T", "E", "F", "R1", "R2", "P1", "P2", "Q", "baseline_mm", "rms_px", "rectified"):
        assert key in body
    assert np.asarray(body["P2"]).shape == (3, 4) and np.asarray(body["Q"]).shape == (4, 4)
    assert body["frames_used"] == views.frames.tolist()
    assert pair_name(("a", "b")) == "a-b"


def test_check_image(pair):
    rig, sw, views, res = pair
    w, h = res.image_size
    img = np.full((h, w), 128, np.uint8)
    pic = check_image(res, img, img, views.uv_a[0], views.uv_b[0])
    assert pic.shape == (h, 2 * w, 3) and pic.dtype == np.uint8
    assert (pic[:, :, 1] == 200).any()  # guide lines


def test_no_shared_view_is_an_error():
    empty = stereo_views(np.full((3, 4, 2), np.nan), np.full((3, 4, 2), np.nan), np.ones(3, bool), np.arange(3),
                         np.zeros((4, 3)), 4)
    with pytest.raises(ValueError, match="no frame where both a and b"):
        calibrate_pair(empty, ("a", "b"), (64, 48), np.eye(3), np.zeros(5), np.eye(3), np.zeros(5))
