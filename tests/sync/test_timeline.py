"""Resampling keypoints onto another clock: exact on linear motion, slot-shuffle safe, NaN outside."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.triangulation.timeline import (
    frame_times,
    match_neighbours,
    resample_camera,
    resample_keypoints,
    source_positions,
)


def _linear_people(T: int, P: int = 3, J: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """People moving linearly in the image (px per frame), far apart; returns (keypoints, velocity)."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 50, (P, J, 2)) + 300.0 * np.arange(P)[:, None, None]
    vel = rng.uniform(-3, 3, (P, 1, 2))
    xy = start[None] + np.arange(T)[:, None, None, None] * vel[None]
    kp = np.concatenate([xy, np.full((T, P, J, 1), 0.8)], axis=-1)
    return kp, vel


def _shuffle(kp: np.ndarray, seed: int = 1) -> np.ndarray:
    order = np.argsort(np.random.default_rng(seed).random(kp.shape[:2]), axis=1)
    return np.take_along_axis(kp, order[:, :, None, None], axis=1)


def _sorted_people(kp: np.ndarray) -> np.ndarray:
    """Order each frame's slots by mean x (the test people are far apart in x)."""
    key = np.nan_to_num(np.nanmean(kp[..., 0], axis=-1), nan=1e9)
    return np.take_along_axis(kp, np.argsort(key, axis=1)[:, :, None, None], axis=1)


def test_linear_motion_interpolates_exactly_despite_shuffled_slots():
    kp, _ = _linear_people(20)
    pos = np.array([0.0, 0.3, 4.5, 7.75, 18.99, 19.0])
    out = resample_keypoints(_shuffle(kp), pos)
    want = kp[0][None] + pos[:, None, None, None] * (kp[1] - kp[0])[None]
    np.testing.assert_allclose(_sorted_people(out)[..., :2], want[..., :2], atol=1e-9)
    np.testing.assert_allclose(out[..., 2], 0.8)


def test_outside_the_recording_is_missing():
    kp, _ = _linear_people(10)
    out = resample_keypoints(kp, np.array([-0.01, np.nan, 9.01]))
    assert np.isnan(out[..., :2]).all() and (out[..., 2] == 0).all()


def test_person_appearing_takes_the_nearest_frame():
    kp, _ = _linear_people(4, P=2)
    kp[:2, 1] = [np.nan, np.nan, 0.0]  # person 1 appears at frame 2
    out = resample_keypoints(kp, np.array([1.4, 1.6]))
    present = np.isfinite(out[..., 0]).all(-1)
    assert present[0].sum() == 1 and present[1].sum() == 2
    seen = out[1][present[1]]
    assert any(np.allclose(s[..., :2], kp[2, 1, :, :2]) for s in seen)


def test_partial_joints_fall_back_to_nearest_frame():
    kp, _ = _linear_people(3, P=1, J=4)
    kp[1, 0, 2] = [np.nan, np.nan, 0.0]
    out = resample_keypoints(kp, np.array([0.4, 0.6]))
    np.testing.assert_allclose(out[0, 0, 2, :2], kp[0, 0, 2, :2])
    assert np.isnan(out[1, 0, 2, :2]).all()


def test_far_jumps_are_not_matched():
    kp, _ = _linear_people(3, P=1)
    kp[1:, 0, :, :2] += 500.0
    assert (match_neighbours(kp, max_match_px=100.0)[0] == -1).all()


def test_clock_mapping_with_offset_rate_and_fps():
    frames = np.arange(50)
    t = frame_times(frames, 25.0, offset_s=0.3, rate=1.001)
    np.testing.assert_allclose(source_positions(t, frames, 25.0, 0.3, 1.001), frames, atol=1e-9)
    kp, vel = _linear_people(50, P=1)
    ref_t = np.arange(10, 30) / 30.0
    out = resample_camera(kp, frames, 25.0, ref_t, offset_s=0.1)
    k = (ref_t - 0.1) * 25.0
    np.testing.assert_allclose(out[:, 0, :, :2], kp[0, 0, :, :2] + k[:, None, None] * vel[0], atol=1e-9)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\(T, P, J, 3\)"):
        resample_keypoints(np.zeros((3, 2, 3)), np.zeros(2))
