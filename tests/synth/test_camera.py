"""The lens model agrees with OpenCV and inverts exactly."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.synth.camera import distort_project, undistort_pixels

K = np.array([[420.0, 0.0, 281.0], [0.0, 418.0, 207.0], [0.0, 0.0, 1.0]])


@settings(max_examples=25, deadline=None)
@given(k1=st.floats(-0.3, 0.1), k2=st.floats(-0.03, 0.08),
       p1=st.floats(-2e-3, 2e-3), p2=st.floats(-2e-3, 2e-3))
def test_projection_matches_opencv_and_undistortion_inverts(k1, k2, p1, p2):
    dist = np.array([k1, k2, p1, p2, 0.0])
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-0.6, 0.6, (50, 2)), np.ones(50)] * rng.uniform(1, 4, (50, 1))
    ours = distort_project(pts, K, dist)
    ref = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, dist)[0].reshape(-1, 2)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    xy = undistort_pixels(ours, K, dist)
    np.testing.assert_allclose(xy, pts[:, :2] / pts[:, 2:], atol=1e-9)


def test_points_behind_camera_are_nan():
    uv = distort_project(np.array([[0.0, 0.0, -1.0], [0.1, 0.0, 2.0]]), K, np.zeros(5))
    assert np.isnan(uv[0]).all() and np.isfinite(uv[1]).all()
