"""Bundle adjustment: analytic Jacobians vs finite differences, recovery of known rigs, never worse than the start."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.calibration import bundle_adjust as ba
from pipeline.calibration.board import object_points
from pipeline.calibration.extrinsics import RigOptions, calibrate_rig
from tests.calibration.extrinsics_synthetic import rig_errors, ring_rig, sweep


def random_problem(seed: int, free: bool = True):
    rng = np.random.default_rng(seed)
    C, B, M = 3, 4, 40
    intr = np.tile([500.0, 510.0, 320.0, 240.0, -0.2, 0.05, 1e-3, -2e-3, 0.01, 0.01, 2e-3, 1e-3], (C, 1))
    state = ba.BAState(rng.normal(0, 0.5, (C, 3)), rng.normal(0, 0.2, (C, 3)) + [0, 0, 3], intr,
                       rng.uniform(-1, 1, C), rng.normal(0, 0.5, (B, 3)), rng.normal(0, 0.2, (B, 3)))
    data = ba.BAData(rng.integers(0, C, M), rng.integers(0, B, M), rng.normal(0, 0.1, (M, 3)),
                     rng.normal(300, 50, (M, 2)))
    mask = rng.random((C, ba.N_INTR)) < 0.6 if free else None
    return data, state, ba.BAOptions(fixed_camera=1, free_intrinsics=mask)


@pytest.mark.parametrize("seed", [0, 1])
def test_jacobian_matches_finite_differences(seed):
    data, state, opts = random_problem(seed)
    x, J = ba.jacobian(data, state, opts)
    _, f = ba.parameter_vector(data, state, opts)
    num = np.zeros(J.shape)
    for i in range(x.size):
        h = 1e-6 * max(1.0, abs(x[i]))
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[:, i] = (f(xp) - f(xm)) / (2 * h)
    np.testing.assert_allclose(J.toarray(), num, rtol=1e-5, atol=1e-5 * np.abs(num).max())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3))
def test_rodrigues_matches_opencv_and_its_derivative(v):
    import cv2

    rvec = np.asarray(v, float)
    R, dR = ba.rodrigues_jacobian(rvec)
    np.testing.assert_allclose(R, cv2.Rodrigues(rvec)[0], atol=1e-12)
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-6
        num = (ba.rodrigues(rvec + e) - ba.rodrigues(rvec - e)) / 2e-6
        np.testing.assert_allclose(dR[i], num, atol=1e-6)
    np.testing.assert_allclose(ba.rodrigues(ba.rotation_to_rvec(R)), R, atol=1e-12)


def test_rodrigues_derivative_at_zero():
    _, dR = ba.rodrigues_jacobian(np.zeros(3))
    np.testing.assert_allclose(dR, ba.skew(np.eye(3)))


def test_projection_matches_opencv():
    import cv2

    rng = np.random.default_rng(3)
    pts = rng.normal(0, 0.3, (20, 3)) + [0, 0, 2]
    intr = np.array([480.0, 470.0, 330.0, 250.0, -0.25, 0.08, 1e-3, -5e-4, 0.01, 0.02, -0.01, 0.005])
    uv, _, _ = ba.project_with_jacobian(pts, np.tile(intr, (20, 1)), np.zeros(20))
    K = np.array([[480.0, 0, 330.0], [0, 470.0, 250.0], [0, 0, 1]])
    ref = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, intr[4:])[0].reshape(-1, 2)
    np.testing.assert_allclose(uv, ref, atol=1e-9)


@pytest.fixture(scope="module")
def ring():
    rig = ring_rig(4, stereo=True)
    return rig, sweep(rig, 60, noise_px=0.2)


def test_rig_recovered_from_noisy_projections(ring):
    rig, sw = ring
    cal = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions())
    err = rig_errors(cal.rig, rig)
    assert err["centre_mm"].max() < 10.0, err
    assert err["rotation_deg"].max() < 0.2, err
    assert abs(err["scale"] - 1) < 1e-3  # metric scale from the square size
    assert max(cal.rms_px.values()) < 0.5
    assert cal.ba.converged and not cal.warnings
    assert cal.rig.world == "cam0"
    np.testing.assert_allclose(cal.rig.camera("cam0").R, np.eye(3))


def test_deterministic(ring):
    _, sw = ring
    opts = RigOptions(max_frames=30, seed=4)
    a = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), opts)
    b = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), opts)
    np.testing.assert_array_equal(a.rig.R, b.rig.R)
    np.testing.assert_array_equal(a.rig.t, b.rig.t)
    c = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(max_frames=30, seed=5))
    assert not np.array_equal(a.rig.t, c.rig.t)  # the seed drives the frame sample


def test_finite_difference_path_agrees(ring):
    _, sw = ring
    a = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(outlier_rounds=0))
    b = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(outlier_rounds=0,
                                                                                    jacobian="2-point"))
    assert np.abs(a.rig.centers - b.rig.centers).max() < 1e-4


def test_intrinsics_refined_with_a_mask(ring):
    rig, sw = ring
    intr = sw.intrinsics()
    bad = []
    for c in intr:
        K = c.K.copy()
        if c.name in ("cam0", "cam1"):
            K[0, 0] *= 1.01  # 1 % focal error
            K[0, 2] += 4.0
        bad.append(type(c)(c.name, c.image_size, K, c.dist))
    obj = object_points(sw.board)
    fixed = calibrate_rig(sw.obs, bad, obj, RigOptions())
    freed = calibrate_rig(sw.obs, bad, obj, RigOptions(free_intrinsics={"cam0": ["fx", "fy", "cx", "cy"],
                                                                          "cam1": ["fx", "cx"]}))
    assert freed.freed == {"cam0": ["fx", "fy", "cx", "cy"], "cam1": ["fx", "cx"]}
    for name in ("cam0", "cam1"):
        est, true = freed.rig.camera(name).K, rig.camera(name).K
        assert abs(est[0, 0] / true[0, 0] - 1) < 2e-3
        assert abs(est[0, 2] - true[0, 2]) < 1.5
    assert freed.rig.camera("cam1").K[1, 1] == bad[1].K[1, 1]  # fy of cam1 stayed fixed
    assert freed.rig.camera("cam2").K[0, 0] == bad[2].K[0, 0]
    assert max(freed.rms_px.values()) < max(fixed.rms_px.values())
    assert rig_errors(freed.rig, rig)["centre_mm"].max() < rig_errors(fixed.rig, rig)["centre_mm"].max()


def test_never_worse_than_the_start(monkeypatch):
    data, state, opts = random_problem(5, free=False)
    real = ba.least_squares

    def worse(fun, x0, **kw):
        sol = real(fun, x0, **kw)
        sol.x = sol.x + 0.5  # pretend the solver wandered off
        sol.fun = fun(sol.x)
        return sol

    monkeypatch.setattr(ba, "least_squares", worse)
    res = ba.bundle_adjust(data, state, opts)
    assert res.kept_initial and not res.converged
    assert res.state is state
    assert res.cost_final == res.cost_initial


def test_not_converging_warns_with_the_last_cost(ring, caplog):
    _, sw = ring
    cal = calibrate_rig(sw.obs, sw.intrinsics(), object_points(sw.board), RigOptions(max_nfev=1, outlier_rounds=0))
    assert cal.ba.status == 0
    assert any("did not converge" in w and "last cost" in w for w in cal.warnings)
    assert "did not converge" in caplog.text
    assert cal.ba.cost_final <= cal.ba.cost_initial


def test_single_thread_blas_restores_the_thread_count():
    from pipeline.calibration.blas_threads import _openblas_controls, single_thread_blas

    controls = _openblas_controls()
    before = [get() for _, get in controls]
    with single_thread_blas():
        assert all(get() == 1 for _, get in controls)
    assert [get() for _, get in controls] == before
