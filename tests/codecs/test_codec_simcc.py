"""SimCCCodec: labels, KL targets, argmax / DARK decoding, missing joints, validation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs import CodecError, SimCCCodec, simcc_kl_loss
from pipeline.codecs._reference import decode_simcc_loop

INPUT = (192, 256)


def _points(rng, shape, margin=0.0):
    w, h = INPUT
    return rng.uniform([-margin, -margin], [w - 1 + margin, h - 1 + margin], size=(*shape, 2))


def test_bins_and_shapes():
    codec = SimCCCodec(INPUT, split_ratio=2.0)
    t = codec.encode(_points(np.random.default_rng(0), (3, 17)))
    assert codec.bins == (384, 512)
    assert t.x_labels.shape == (3, 17, 384) and t.y_labels.shape == (3, 17, 512)
    assert t.x_targets.shape == (3, 17, 384) and t.keypoint_weights.shape == (3, 17)
    assert SimCCCodec((100, 80), split_ratio=1.5).bins == (150, 120)


@pytest.mark.parametrize("smoothing", ["gaussian", "standard"])
def test_round_trip_k2_within_half_a_bin(smoothing):
    k = 2.0
    codec = SimCCCodec(INPUT, split_ratio=k, smoothing=smoothing, label_smooth_weight=0.1)
    kp = _points(np.random.default_rng(1), (64, 17))
    t = codec.encode(kp)
    decoded, scores = codec.decode(t.x_labels, t.y_labels)
    err = np.abs(decoded - kp)
    assert err.max() < 1 / (2 * k) + 1e-4  # float32 output
    assert err.mean() < 1 / (4 * k) + 0.01  # uniform rounding error
    assert (scores > 0).all()


@settings(max_examples=80, deadline=None)
@given(st.floats(0.0, 191.0), st.floats(0.0, 255.0), st.sampled_from([1.0, 1.5, 2.0, 3.0]))
def test_argmax_error_is_at_most_half_a_bin(x, y, k):
    codec = SimCCCodec(INPUT, split_ratio=k, sigma=4.0)
    t = codec.encode(np.array([[x, y]]))
    decoded, _ = codec.decode(t.x_labels, t.y_labels)
    assert np.abs(decoded[0, 0] - [x, y]).max() <= 1 / (2 * k) + 1e-4


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 191.0), st.floats(0.0, 255.0), st.sampled_from([4.9, 6.0]))
def test_dark_recovers_sub_bin_positions(x, y, sigma):
    codec = SimCCCodec(INPUT, split_ratio=2.0, sigma=sigma, use_dark=True)
    t = codec.encode(np.array([[x, y]]))
    decoded, _ = codec.decode(t.x_labels, t.y_labels)
    assert np.abs(decoded[0, 0] - [x, y]).max() < 1e-3


def test_kl_targets_are_distributions_and_the_loss_is_zero_at_the_target():
    codec = SimCCCodec(INPUT, split_ratio=2.0, sigma=(4.9, 5.66))
    t = codec.encode(_points(np.random.default_rng(2), (2, 17)))
    np.testing.assert_allclose(t.x_targets.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t.y_targets.sum(-1), 1.0, rtol=1e-5)
    beta = 10.0
    perfect_x = torch.log(torch.from_numpy(t.x_targets).double()) / beta
    perfect_y = torch.log(torch.from_numpy(t.y_targets).double()) / beta
    loss = simcc_kl_loss(perfect_x, perfect_y, t.x_targets, t.y_targets, t.keypoint_weights, beta=beta)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    pred_x = torch.zeros(t.x_targets.shape, dtype=torch.float64, requires_grad=True)
    pred_y = torch.zeros(t.y_targets.shape, dtype=torch.float64, requires_grad=True)
    loss = simcc_kl_loss(pred_x, pred_y, t.x_targets, t.y_targets, beta=beta)
    loss.backward()
    assert float(loss.detach()) > 1.0 and pred_x.grad.abs().sum() > 0


def test_normalized_gaussian_has_unit_area():
    codec = SimCCCodec(INPUT, split_ratio=1.0, sigma=6.0, normalize=True)
    t = codec.encode(np.array([[96.0, 128.0]]))
    assert t.x_labels.sum() == pytest.approx(1.0, rel=1e-4)


def test_score_is_min_of_maxima_and_non_positive_means_missing():
    codec = SimCCCodec((4, 3), split_ratio=1.0)
    sx = np.array([[[0.1, 0.9, 0.2, 0.0], [-1.0, -0.5, -2.0, -3.0]]], np.float32)
    sy = np.array([[[0.3, 0.2, 0.7], [0.1, 5.0, 0.2]]], np.float32)
    kp, scores = codec.decode(sx, sy)
    np.testing.assert_allclose(kp[0, 0], [1, 2])
    assert scores[0, 0] == pytest.approx(0.7)
    assert np.isnan(kp[0, 1]).all() and scores[0, 1] == 0


def test_invisible_and_out_of_range_joints_have_zero_weight():
    codec = SimCCCodec(INPUT, split_ratio=2.0)
    kp = np.array([[10.0, 10.0], [np.nan, 5.0], [500.0, 10.0], [10.0, 10.0]])
    t = codec.encode(kp, keypoints_visible=np.array([1, 1, 1, 0]))
    np.testing.assert_array_equal(t.keypoint_weights, [[1, 0, 0, 0]])
    assert t.x_labels[0, 1:].max() == 0 and t.x_targets[0, 1:].max() == 0


@pytest.mark.parametrize("use_dark", [False, True])
def test_batched_equals_per_instance_and_the_loop(use_dark):
    rng = np.random.default_rng(3)
    codec = SimCCCodec(INPUT, split_ratio=2.0, sigma=(4.9, 5.66), use_dark=use_dark)
    t = codec.encode(_points(rng, (6, 17), margin=1.0))
    sx = t.x_labels + rng.normal(0, 0.02, t.x_labels.shape).astype(np.float32)
    sy = t.y_labels + rng.normal(0, 0.02, t.y_labels.shape).astype(np.float32)
    kp, scores = codec.decode(sx, sy)
    for i in range(len(sx)):
        kp_i, scores_i = codec.decode(sx[i], sy[i])
        np.testing.assert_array_equal(kp_i[0], kp[i])
        np.testing.assert_array_equal(scores_i[0], scores[i])
    xy_loop, score_loop = decode_simcc_loop(sx, sy, 2.0, use_dark, codec.blur_kernel_size)
    np.testing.assert_allclose(kp, xy_loop, atol=1e-4)
    np.testing.assert_allclose(scores, score_loop, rtol=1e-6)
    kp_torch, _ = codec.decode(torch.from_numpy(sx), torch.from_numpy(sy))
    np.testing.assert_array_equal(kp_torch, kp)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"smoothing": "laplace"},
            r"SimCCCodec: smoothing must be one of 'gaussian', 'standard'; got 'laplace'",
        ),
        ({"split_ratio": 0}, r"SimCCCodec: split_ratio must be a positive number"),
        ({"sigma": (1, 2, 3)}, r"SimCCCodec: sigma must be a positive number or an \(x, y\) pair"),
        ({"label_smooth_weight": 1.5}, r"SimCCCodec: label_smooth_weight must be a number in \[0, 1\)"),
        ({"blur_kernel_size": 0}, r"SimCCCodec: blur_kernel_size must be an odd integer >= 1"),
        ({"use_dark": 1}, r"SimCCCodec: use_dark must be True or False"),
    ],
)
def test_invalid_options_name_the_class_and_allowed_values(kwargs, message):
    with pytest.raises(CodecError, match=message):
        SimCCCodec(**kwargs)


def test_wrong_shapes_are_reported():
    codec = SimCCCodec(INPUT, split_ratio=2.0)
    with pytest.raises(CodecError, match=r"simcc_x must be \(N, K, 384\) and simcc_y \(N, K, 512\)"):
        codec.decode(np.zeros((1, 17, 512)), np.zeros((1, 17, 384)))


def test_empty_batch_and_all_zero_rows():
    codec = SimCCCodec(INPUT, split_ratio=2.0, use_dark=True)
    kp, scores = codec.decode(np.zeros((0, 17, 384)), np.zeros((0, 17, 512)))
    assert kp.shape == (0, 17, 2) and scores.shape == (0, 17)
    kp, scores = codec.decode(np.zeros((1, 17, 384)), np.zeros((1, 17, 512)))
    assert np.isnan(kp).all() and (scores == 0).all()
