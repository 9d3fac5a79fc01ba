"""Samples, augmentation and metrics: determinism, the flip's joint swap, perfect-prediction scores."""

from __future__ import annotations

import numpy as np

from pipeline.skeleton import COCO17, get_skeleton
from pipeline.training.augment import AugmentConfig, box_from_keypoints, crop_affine, warp_points
from pipeline.training.data import HeldOut, topdown_sample
from pipeline.training.evaluate import bottomup_metrics, oks, topdown_metrics
from pipeline.training.pool import SceneConfig, render_sample

FLIP = get_skeleton("coco17").flip_indices
LS, RS = COCO17.index("left_shoulder"), COCO17.index("right_shoulder")


def test_samples_are_pure_functions_of_seed_and_index():
    scene = SceneConfig(kind="topdown", render_size=(40, 60), people=(1, 3))
    a, b, c = render_sample(scene, 3, 5), render_sample(scene, 3, 5), render_sample(scene, 3, 6)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    image, uv, visible, in_frame, area = a
    assert image.shape == (60, 40, 3) and image.dtype == np.uint8
    assert uv.shape == (17, 2) and visible.shape == in_frame.shape == (17,)
    assert not (visible & ~in_frame).any()
    assert area > 0  # the framed person is visible


def test_bottomup_samples_pad_person_slots():
    image, uv, visible, in_frame, area = render_sample(SceneConfig(kind="bottomup", render_size=(48, 40), people=(2, 2),
                                                             max_people=4), 0, 0)
    assert uv.shape == (4, 17, 2) and np.isnan(uv[2:]).all() and not in_frame[2:].any()
    assert area.shape == (4,) and (area[:2] >= 0).all() and (area[2:] == 0).all()


def test_crop_affine_maps_box_edges_to_pixel_centres():
    affine = crop_affine(np.array([50.0, 40.0, 30.0, 40.0]), (96, 128))
    corners = warp_points(np.array([[35.0, 20.0], [65.0, 60.0]]), affine)
    np.testing.assert_allclose(corners, [[0, 0], [95, 127]], atol=1e-9)


def test_flip_mirrors_and_swaps_left_right():
    scene = SceneConfig(kind="topdown", render_size=(40, 60), people=(1, 1))
    image, uv, visible, in_frame, _ = render_sample(scene, 0, 1)
    off = AugmentConfig(enabled=False)
    flip_only = AugmentConfig(scale=(1.0, 1.0), rotation_prob=0.0, shift=0.0, flip_prob=1.0, color_jitter=0.0,
                              blur_prob=0.0, noise_prob=0.0, occluder_prob=0.0)
    plain = topdown_sample(None, image, uv, visible, in_frame, (32, 48), off, FLIP)
    flipped = topdown_sample(np.random.default_rng(0), image, uv, visible, in_frame, (32, 48), flip_only, FLIP)
    np.testing.assert_allclose(flipped["keypoints"][LS, 0], 31 - plain["keypoints"][RS, 0], atol=1e-4)
    np.testing.assert_allclose(flipped["keypoints"][LS, 1], plain["keypoints"][RS, 1], atol=1e-4)
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, ::-1])


def test_box_from_keypoints_keeps_aspect_and_padding():
    uv = np.array([[10.0, 10.0], [20.0, 50.0], [np.nan, np.nan]])
    box = box_from_keypoints(uv, np.array([True, True, True]), aspect=0.75, padding=1.25)
    np.testing.assert_allclose(box, [15.0, 30.0, 30 * 1.25, 40 * 1.25])
    assert box_from_keypoints(uv, np.array([True, False, False]), 0.75) is None


def test_metrics_of_perfect_predictions():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 90, size=(5, 17, 2)).astype(np.float32)
    vis = rng.random((5, 17)) > 0.2
    held = HeldOut(np.zeros((5, 128, 96, 3), np.uint8), gt, vis, vis.astype(np.float32), np.full(5, 80.0))
    m = topdown_metrics(gt.copy(), held, flip_indices=FLIP)
    assert m["pck"] == 1.0 and m["mean_px"] == 0.0
    off = gt + np.array([5.0, 0.0], np.float32)  # 5 px > 0.05 * 80 = 4 px: every joint misses
    assert topdown_metrics(off, held)["pck"] == 0.0
    persons = rng.uniform(0, 120, size=(4, 3, 17, 2)).astype(np.float32)
    pvis = np.ones((4, 3, 17), bool)
    held_bu = HeldOut(np.zeros((4, 128, 160, 3), np.uint8), persons, pvis, pvis.astype(np.float32))
    preds = [np.concatenate([p, np.ones((3, 17, 1), np.float32)], -1)[::-1] for p in persons]
    bu = bottomup_metrics(preds, held_bu)
    assert bu["recall"] == 1.0 and bu["precision"] == 1.0 and bu["joint_px"] == 0.0
    assert bottomup_metrics([p[:1] for p in preds], held_bu)["recall"] == 1 / 3


def test_oks_falls_with_distance():
    gt = np.zeros((17, 2))
    vis = np.ones(17, bool)
    assert oks(gt, gt, vis, 1000.0) == 1.0
    assert oks(gt + 3, gt, vis, 1000.0) > oks(gt + 6, gt, vis, 1000.0) > 0


def test_truncation_cuts_the_person_at_a_simulated_border():
    """truncate(): black beyond the cut line, the joints there leave the frame; off = no random draw."""
    from pipeline.training.augment import truncate

    image = np.full((160, 120, 3), 200, np.uint8)
    uv = np.stack([np.linspace(30, 90, 17), np.linspace(20, 140, 17)], -1)  # a diagonal person
    visible = np.ones(17, bool)
    cuts = 0
    for seed in range(40):
        img, vis, inf = truncate(np.random.default_rng(seed), image, uv, visible, visible,
                                 AugmentConfig(truncate_prob=1.0, truncate_fraction=(0.3, 0.5)))
        black = (img == 0).all(-1)
        assert black.any() and (img[~black] == 200).all()
        assert 0.3 * 17 - 2 <= (~inf).sum() <= 0.5 * 17 + 2  # a fraction of the joint box is cut
        # every joint that stays sits on an untouched pixel; every cut one on a black pixel
        px = np.round(uv).astype(int)
        assert (black[px[:, 1], px[:, 0]] == ~inf).all()
        assert (vis == inf).all()
        cuts += 1
    assert cuts == 40
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    out = truncate(rng, image, uv, visible, visible, AugmentConfig())
    assert out[0] is image and rng.bit_generator.state == before  # default: untouched, no draw
