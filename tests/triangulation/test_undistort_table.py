"""The undistortion lookup table gives the exact undistortion (same as OpenCV + Newton), fast path or not."""

import numpy as np
import pytest

from pipeline.geometry.camera import TABLE_MIN_POINTS, Camera, undistort_pixels
from pipeline.geometry.undistort_table import UndistortTable


def _camera(dist, skew=0.0):
    K = np.array([[900.0, skew, 641.0], [0.0, 905.0, 355.0], [0.0, 0.0, 1.0]])
    return Camera("c", (1280, 720), K, np.asarray(dist), np.eye(3), np.zeros(3))


@pytest.mark.parametrize("dist,skew", [
    ([-0.30, 0.12, 0.001, -0.0005, -0.02], 0.0),  # strong barrel
    ([0.05, -0.01, 0.0, 0.0, 0.0], 0.0),  # pincushion
    ([-0.2, 0.05, 0.0005, 0.0003, 0.0, 0.01, 0.002, 0.0005], 0.0),  # rational
    ([-0.2, 0.05, 0.0, 0.0, 0.0], 1.5),  # skewed K
])
def test_table_matches_exact_undistortion(dist, skew):
    cam = _camera(dist, skew)
    rng = np.random.default_rng(0)
    uv = rng.uniform([-300, -200], [1580, 920], (30_000, 2))  # inside, in the margin and beyond it
    uv[:5] = np.nan
    uv[5] = [-5000.0, 100.0]
    exact = undistort_pixels(uv, cam.K, cam.dist)
    fast = UndistortTable(cam.K, cam.dist, cam.image_size)(uv)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(exact))
    ok = np.isfinite(exact).all(-1)
    assert np.abs(fast[ok] - exact[ok]).max() < 1e-12


def test_camera_uses_the_table_for_large_batches_with_the_same_result():
    cam = _camera([-0.25, 0.08, 0.0, 0.0, 0.0])
    uv = np.random.default_rng(1).uniform([0, 0], [1280, 720], (TABLE_MIN_POINTS + 10, 2)).reshape(-1, 5, 2)
    out = cam.undistort_points(uv)
    assert "_undistort_table" in cam.__dict__
    assert out.shape == uv.shape
    np.testing.assert_allclose(out, undistort_pixels(uv, cam.K, cam.dist), atol=1e-12, rtol=0)
