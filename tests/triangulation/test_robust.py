"""Accuracy of plain and robust triangulation on a synthetic rig with noisy 2D keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.geometry.robust import RobustOptions, robust_triangulate
from pipeline.geometry.triangulate import triangulate
from pipeline.skeleton import COCO17
from tests.triangulation.synthetic import make_rig, mpjpe_mm, observe, walking_person

RIG = make_rig(5)
TRUTH = walking_person(240, (0.0, 0.0), 1.2, 0.0)[:, None]  # (T, 1, 17, 3)


def _robust(kp: np.ndarray, **kw):
    return robust_triangulate(RIG, kp[..., :2], kp[..., 2], RobustOptions(**kw), flip_pairs=COCO17.flip_pairs)


def test_single_person_2px_noise():
    kp, _ = observe(RIG, TRUTH, noise_px=2.0, seed=1)
    dlt = mpjpe_mm(triangulate(RIG, kp[..., :2], kp[..., 2]), TRUTH)
    res = _robust(kp)
    assert dlt < 15.0
    assert mpjpe_mm(res.points, TRUTH) < 15.0
    assert (res.views_used[np.isfinite(res.points[..., 0])] >= 2).all()
    assert np.nanmean(res.reprojection_error_px) < 4.0


def test_outliers_and_misses():
    kp, truth = observe(RIG, TRUTH, noise_px=2.0, outlier_rate=0.08, miss_rate=0.10, seed=2)
    res = _robust(kp)
    err_mm = np.linalg.norm(res.points - TRUTH, axis=-1) * 1000
    assert mpjpe_mm(res.points, TRUTH) < 25.0
    true_inliers = ((kp[..., 2] > 0) & ~truth["outlier"]).sum(0)
    assert np.nanmax(err_mm[true_inliers >= 3]) < 100.0
    assert np.isfinite(err_mm[true_inliers >= 3]).all()
    # Outlier views are the ones rejected.
    seen = kp[..., 2] > 0
    assert (res.inliers & truth["outlier"]).sum() < 0.02 * truth["outlier"].sum()
    assert (~res.inliers & seen & ~truth["outlier"]).sum() < 0.02 * seen.sum()
    # Plain DLT is wrecked by the same outliers.
    assert mpjpe_mm(triangulate(RIG, kp[..., :2], kp[..., 2]), TRUTH) > 40.0


def test_left_right_swaps_in_one_camera_are_corrected():
    clean, _ = observe(RIG, TRUTH, noise_px=2.0, seed=3)
    swapped, truth = observe(RIG, TRUTH, noise_px=2.0, swap_rate=0.10, swap_camera=1, seed=3)
    assert truth["swapped"].sum() > 10
    base = mpjpe_mm(_robust(clean).points, TRUTH)
    res = _robust(swapped)
    assert mpjpe_mm(res.points, TRUTH) < 1.10 * base
    detected = res.swapped.any(-1)
    assert (detected & truth["swapped"]).sum() >= 0.9 * truth["swapped"].sum()
    assert (detected & ~truth["swapped"]).sum() <= 2
    # After correction the swapped view is used again, not thrown away as an outlier.
    wrists = [COCO17.index("left_wrist"), COCO17.index("right_wrist")]
    fixed = truth["swapped"][1]
    assert res.inliers[1][fixed][:, wrists].mean() > 0.9


@pytest.mark.parametrize("n_cams", [4, 16])
def test_sampled_hypotheses_scale_to_many_cameras(n_cams):
    rig = make_rig(n_cams, seed=5)
    truth = TRUTH[::4]
    kp, _ = observe(rig, truth, noise_px=2.0, outlier_rate=0.08, miss_rate=0.10, seed=4)
    res = robust_triangulate(rig, kp[..., :2], kp[..., 2], RobustOptions(max_hypotheses=24))
    assert mpjpe_mm(res.points, truth) < 25.0


def test_two_disagreeing_views_give_nan():
    kp, _ = observe(RIG, TRUTH[:20], noise_px=0.0, seed=0)
    kp[2:] = np.nan
    kp[1] = kp[1][:, :, np.roll(np.arange(17), 5)]  # view 1 sees other joints: mostly inconsistent
    res = robust_triangulate(RIG, kp[..., :2], kp[..., 2], RobustOptions(threshold_px=10.0))
    finite = np.isfinite(res.points[..., 0])
    assert finite.mean() < 0.2
    assert (res.views_used[~finite] == 0).all()
    assert (res.reprojection_error_px[finite] < 10.0).all()
