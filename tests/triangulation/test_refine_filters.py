"""Refinement (analytic sparse Jacobian, accuracy gain), gap filling and the temporal filters."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.geometry.triangulate import triangulate
from pipeline.skeleton import COCO17
from pipeline.triangulation.filters import butterworth, fill_gaps, one_euro
from pipeline.triangulation.refine import RefineOptions, build_problem, refine
from tests.triangulation.synthetic import make_rig, mpjpe_mm, observe, walking_person

RIG = make_rig(4, seed=7)


def _data(T: int = 120, seed: int = 0):
    truth = walking_person(T, (0.0, 0.0), 1.2, 0.3)[:, None]
    kp, _ = observe(RIG, truth, noise_px=2.0, miss_rate=0.05, seed=seed)
    uv = kp[..., :2].astype(float)
    w = kp[..., 2].astype(float)
    return truth, uv, w, triangulate(RIG, uv, w)


def test_refine_jacobian_matches_finite_differences():
    _, uv, w, pts = _data(T=8)
    prob = build_problem(RIG, pts, uv, w, COCO17.bones, RefineOptions(bone_weight=2.0, smooth_weight=1.5))
    x = prob.x0 + np.random.default_rng(0).normal(0, 0.01, prob.x0.shape)
    jac = prob.jac(x).toarray()
    eps = 1e-6
    cols = np.random.default_rng(1).choice(x.size, 40, replace=False)
    for j in cols:
        e = np.zeros_like(x)
        e[j] = eps
        fd = (prob.fun(x + e) - prob.fun(x - e)) / (2 * eps)
        np.testing.assert_allclose(jac[:, j], fd, rtol=1e-4, atol=1e-3)


def test_refinement_improves_accuracy_and_keeps_unknowns_nan():
    truth, uv, w, pts = _data()
    pts[10, 0, 3] = np.nan
    out = refine(RIG, pts, uv, w, COCO17.bones, RefineOptions())
    assert np.isnan(out[10, 0, 3]).all()
    assert mpjpe_mm(out, truth) < 0.85 * mpjpe_mm(pts, truth)
    b = np.asarray(COCO17.bones)
    spread = lambda x: np.nanstd(np.linalg.norm(x[:, 0, b[:, 0]] - x[:, 0, b[:, 1]], axis=-1), axis=0).mean()  # noqa: E731
    assert spread(out) < 0.7 * spread(pts)


def test_fill_gaps_only_short_interior_runs():
    x = np.arange(20, dtype=float)[:, None, None].repeat(3, -1)
    x[3:6] = np.nan  # 3 frames: filled
    x[8:16] = np.nan  # 8 frames: too long
    x[:1] = np.nan  # leading: not filled
    out = fill_gaps(x, max_gap=4)
    np.testing.assert_allclose(out[3:6, 0, 0], [3, 4, 5])
    assert np.isnan(out[8:16]).all() and np.isnan(out[0]).all()


def test_butterworth_smooths_without_lag_and_keeps_nan():
    truth, _, _, pts = _data(T=200)
    pts[50:53] = np.nan
    out = butterworth(pts, 30.0, 6.0)
    assert np.isnan(out[50:53]).all()
    assert mpjpe_mm(out, truth) < 0.8 * mpjpe_mm(pts, truth)
    t = np.arange(300) / 30.0
    sine = np.sin(2 * np.pi * 1.0 * t)[:, None]
    np.testing.assert_allclose(butterworth(sine, 30.0, 6.0)[20:-20], sine[20:-20], atol=0.01)  # zero phase
    with pytest.raises(ValueError, match="cutoff_hz"):
        butterworth(pts, 30.0, 20.0)


def test_one_euro_reduces_jitter_when_still_and_follows_motion():
    rng = np.random.default_rng(0)
    still = 1.0 + rng.normal(0, 0.005, (200, 3))
    out = one_euro(still, 30.0, min_cutoff_hz=1.0, beta=0.5)
    assert np.std(out[50:], 0).mean() < 0.5 * np.std(still[50:], 0).mean()
    ramp = np.linspace(0, 2, 200)[:, None] * np.ones(3)  # 0.3 m/s
    out = one_euro(ramp, 30.0, min_cutoff_hz=4.0, beta=50.0)
    assert np.abs(out - ramp)[20:].max() < 0.01
    gap = still.copy()
    gap[100] = np.nan
    assert np.isnan(one_euro(gap, 30.0)[100]).all()
