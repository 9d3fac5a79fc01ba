"""Camera model, rig I/O and weighted DLT: exactness, Jacobians, NaN handling, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.errors import ArtifactError
from pipeline.geometry.camera import Camera, distort, distort_jacobian, undistort
from pipeline.geometry.rig import Rig
from pipeline.geometry.triangulate import reprojection_errors, triangulate
from tests.triangulation.synthetic import make_rig

RIG = make_rig(5, seed=3)


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform([-1.5, -1.5, 0.0], [1.5, 1.5, 2.0], (n, 3))


def test_project_matches_opencv():
    X = _points(500)
    for cam in RIG.cameras:
        ref, _ = cv2.projectPoints(X, cv2.Rodrigues(cam.R)[0], cam.t, cam.K, cam.dist)
        np.testing.assert_allclose(cam.project(X), ref[:, 0], atol=1e-8)
    np.testing.assert_allclose(RIG.project(X)[2], RIG.cameras[2].project(X), atol=1e-12)


def test_rational_model_matches_opencv_and_undistorts():
    cam = RIG.cameras[0]
    dist8 = np.array([0.3, -0.1, 1e-3, -2e-3, 0.02, 0.25, -0.05, 0.01])
    c8 = Camera("c", cam.image_size, cam.K, dist8, cam.R, cam.t)
    X = _points(300, 1)
    ref, _ = cv2.projectPoints(X, cv2.Rodrigues(cam.R)[0], cam.t, cam.K, dist8)
    uv = c8.project(X)
    np.testing.assert_allclose(uv, ref[:, 0], atol=1e-8)
    pc = c8.world_to_cam(X)
    np.testing.assert_allclose(c8.undistort_points(uv), pc[:, :2] / pc[:, 2:], atol=1e-10)


def test_undistort_inverts_distort_and_propagates_nan():
    dist8 = np.array([-0.28, 0.09, 1e-3, -1e-3, -0.015, 0, 0, 0])
    xy = np.random.default_rng(0).uniform(-0.7, 0.7, (1000, 2))
    xy[5] = np.nan
    back = undistort(distort(xy, dist8), dist8)
    assert np.isnan(back[5]).all()
    np.testing.assert_allclose(np.delete(back, 5, 0), np.delete(xy, 5, 0), atol=1e-12)


def test_jacobians_match_finite_differences():
    cam = RIG.cameras[1]
    X = _points(50, 2)
    _, jac = cam.project_jacobian(X)
    eps = 1e-6
    fd = np.stack([(cam.project(X + eps * e) - cam.project(X - eps * e)) / (2 * eps) for e in np.eye(3)], -1)
    np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=1e-4)
    xy = np.random.default_rng(1).uniform(-0.6, 0.6, (50, 2))
    jd = distort_jacobian(xy, cam.dist8)
    fd2 = np.stack([(distort(xy + eps * e, cam.dist8) - distort(xy - eps * e, cam.dist8)) / (2 * eps)
                    for e in np.eye(2)], -1)
    np.testing.assert_allclose(jd, fd2, rtol=1e-6, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (7, 3), elements=st.floats(-1.5, 1.5)),
       st.lists(st.floats(0.05, 1.0), min_size=5, max_size=5))
def test_project_then_triangulate_recovers_points(pts, weights):
    pts = pts + np.array([0.0, 0.0, 1.0])
    uv = RIG.project(pts)
    w = np.broadcast_to(np.array(weights)[:, None], uv.shape[:2])
    np.testing.assert_allclose(triangulate(RIG, uv, w), pts, atol=1e-7)
    assert np.nanmax(reprojection_errors(RIG, pts, uv)) < 1e-9


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (6, 3), elements=st.floats(-1.0, 1.0)), st.integers(0, 2**31 - 1))
def test_nan_in_nan_out_and_two_views_needed(pts, seed):
    rng = np.random.default_rng(seed)
    uv = RIG.project(pts + [0.0, 0.0, 1.0])
    keep = rng.random(uv.shape[:2]) < 0.5
    uv[~keep] = np.nan
    out = triangulate(RIG, uv)
    few = keep.sum(0) < 2
    assert np.isnan(out[few]).all()
    np.testing.assert_allclose(out[~few], (pts + [0.0, 0.0, 1.0])[~few], atol=1e-7)


def test_batch_shapes_and_shape_errors():
    uv = RIG.project(_points(24).reshape(2, 3, 4, 3))
    assert triangulate(RIG, uv).shape == (2, 3, 4, 3)
    with pytest.raises(ValueError, match="uv_px must have shape"):
        triangulate(RIG, uv[:3])


def test_rig_round_trip(tmp_path):
    RIG.save(tmp_path / "rig.yaml")
    back = Rig.load(tmp_path / "rig.yaml")
    assert back.names == RIG.names
    X = _points(10)
    np.testing.assert_allclose(back.project(X), RIG.project(X), atol=1e-9)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(K=[[0, 0, 640], [0, 0, 360], [0, 0, 1]]), "field 'K' is singular"),
    (lambda c: c.pop("R"), "field 'R' missing"),
    (lambda c: c.update(R=[[1, 0, 0], [0, 2, 0], [0, 0, 1]]), "field 'R' is not a rotation"),
    (lambda c: c.update(t=[0, 1]), r"field 't' has shape \[2\]"),
    (lambda c: c.update(dist=[0.1, 0.2, 0.3]), "field 'dist' must hold 4, 5 or 8"),
])
def test_rig_errors_name_the_field(tmp_path, edit, match):
    import yaml

    RIG.save(tmp_path / "rig.yaml")
    data = yaml.safe_load((tmp_path / "rig.yaml").read_text())
    edit(data["cameras"]["cam1"])
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ArtifactError, match=match) as info:
        Rig.load(tmp_path / "rig.yaml")
    assert "cam1" in str(info.value) and "\n" not in str(info.value)


def test_rig_wrong_schema(tmp_path):
    (tmp_path / "rig.yaml").write_text("schema: posecap/session@1\ncameras: {}\n")
    with pytest.raises(ArtifactError, match="expected a 'rig' artifact"):
        Rig.load(tmp_path / "rig.yaml")
