"""HeatmapCodec: UDP encoding, argmax / quarter / DARK decoding, batching and validation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs import CodecError, HeatmapCodec, flip_heatmaps
from pipeline.codecs._reference import decode_heatmaps_loop
from pipeline.errors import ConfigError
from pipeline.skeleton import COCO17

INPUT, HEATMAP = (192, 256), (48, 64)  # [w, h]: 64 x 48 heatmaps


def _random_heatmap_points(rng, shape, margin=0.0):
    w, h = HEATMAP
    return rng.uniform([-margin, -margin], [w - 1 + margin, h - 1 + margin], size=(*shape, 2))


def _round_trip_error(codec, kp_hm):
    targets = codec.encode(codec.to_input(kp_hm))
    decoded, _ = codec.decode(targets.heatmaps)
    return np.linalg.norm(codec.to_heatmap(decoded) - kp_hm, axis=-1)


def test_encode_shapes_and_peak():
    codec = HeatmapCodec(INPUT, HEATMAP, sigma=2.0)
    kp = np.array([[[10.0, 20.0], [100.0, 200.0]]])
    t = codec.encode(kp)
    assert t.heatmaps.shape == (1, 2, 64, 48) and t.heatmaps.dtype == np.float32
    assert t.keypoint_weights.shape == (1, 2)
    single = codec.encode(kp[0])
    assert single.heatmaps.shape == (1, 2, 64, 48)
    assert t.heatmaps.max() <= 1.0 and t.heatmaps.max() > 0.9


def test_udp_transform_maps_corner_pixels_to_corner_pixels():
    codec = HeatmapCodec(INPUT, HEATMAP)
    np.testing.assert_allclose(codec.to_heatmap([[0, 0], [191, 255]]), [[0, 0], [47, 63]])
    biased = HeatmapCodec(INPUT, HEATMAP, unbiased=False)
    np.testing.assert_allclose(biased.to_heatmap([[191, 255]]), [[47.75, 63.75]])


def test_dark_round_trip_mean_error_below_005_px():
    rng = np.random.default_rng(0)
    err = _round_trip_error(
        HeatmapCodec(INPUT, HEATMAP, sigma=2.0, refine="dark"), _random_heatmap_points(rng, (64, 17))
    )
    assert err.mean() < 0.05
    assert err.mean() < 1e-3  # in fact: the border-aware stencil keeps DARK exact to ~1e-4 px


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 47.0), st.floats(0.0, 63.0), st.sampled_from([1.5, 2.0, 3.0]))
def test_dark_recovers_any_sub_pixel_point(x, y, sigma):
    codec = HeatmapCodec(INPUT, HEATMAP, sigma=sigma, refine="dark")
    err = _round_trip_error(codec, np.array([[[x, y]]]))
    assert err.max() < 0.01


def test_quarter_offset_beats_plain_argmax():
    rng = np.random.default_rng(1)
    kp = _random_heatmap_points(rng, (32, 17))
    plain = _round_trip_error(HeatmapCodec(INPUT, HEATMAP, refine="none"), kp).mean()
    quarter = _round_trip_error(HeatmapCodec(INPUT, HEATMAP, refine="quarter"), kp).mean()
    assert quarter < plain
    assert plain == pytest.approx(0.38, abs=0.05)  # mean distance to the nearest pixel centre


def test_biased_transform_also_round_trips():
    rng = np.random.default_rng(2)
    codec = HeatmapCodec(INPUT, HEATMAP, unbiased=False)
    assert _round_trip_error(codec, _random_heatmap_points(rng, (8, 17))).mean() < 1e-3


@pytest.mark.parametrize("refine", ["dark", "quarter", "none"])
def test_batched_equals_per_instance_and_the_loop(refine):
    rng = np.random.default_rng(3)
    codec = HeatmapCodec(INPUT, HEATMAP, refine=refine)
    heatmaps = codec.encode(codec.to_input(_random_heatmap_points(rng, (6, 17), margin=2))).heatmaps
    heatmaps = heatmaps + rng.normal(0, 0.02, heatmaps.shape).astype(np.float32)  # noisy, multi-peaked
    kp, scores = codec.decode(heatmaps)
    for i in range(len(heatmaps)):
        kp_i, scores_i = codec.decode(heatmaps[i])
        np.testing.assert_array_equal(kp_i[0], kp[i])
        np.testing.assert_array_equal(scores_i[0], scores[i])
    xy_loop, vals_loop = decode_heatmaps_loop(heatmaps, refine, codec.blur_kernel_size)
    np.testing.assert_allclose(codec.to_heatmap(kp), xy_loop, atol=1e-4)
    np.testing.assert_allclose(scores, vals_loop, rtol=1e-6)


def test_torch_input_decodes_like_numpy():
    rng = np.random.default_rng(4)
    codec = HeatmapCodec(INPUT, HEATMAP)
    heatmaps = codec.encode(codec.to_input(_random_heatmap_points(rng, (2, 17)))).heatmaps
    np.testing.assert_array_equal(codec.decode(torch.from_numpy(heatmaps))[0], codec.decode(heatmaps)[0])


def test_missing_and_invisible_joints():
    codec = HeatmapCodec(INPUT, HEATMAP)
    on_pixel = codec.to_input([12.0, 20.0])  # lands on a heatmap pixel centre: peak value 1
    kp = np.array([[[np.nan, np.nan], on_pixel, on_pixel, [1e4, 50.0]]])
    t = codec.encode(kp, keypoints_visible=np.array([[1, 1, 0, 1]]))
    np.testing.assert_array_equal(t.keypoint_weights, [[0, 1, 0, 0]])
    assert t.heatmaps[0, [0, 2, 3]].max() == 0
    decoded, scores = codec.decode(t.heatmaps)
    assert np.isnan(decoded[0, [0, 2, 3]]).all() and (scores[0, [0, 2, 3]] == 0).all()
    np.testing.assert_allclose(decoded[0, 1], on_pixel, atol=1e-3)
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-3)


def test_flip_heatmaps_equals_encoding_the_flipped_keypoints():
    rng = np.random.default_rng(5)
    codec = HeatmapCodec(INPUT, HEATMAP)
    kp = codec.to_input(_random_heatmap_points(rng, (2, 17)))
    flipped = flip_heatmaps(codec.encode(kp).heatmaps, COCO17)
    expected = codec.encode(COCO17.flip_keypoints(kp, INPUT[0])).heatmaps
    np.testing.assert_allclose(flipped, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"refine": "taylor"},
            r"HeatmapCodec: refine must be one of 'dark', 'quarter', 'none'; got 'taylor'",
        ),
        ({"sigma": 0}, r"HeatmapCodec: sigma must be a positive number"),
        ({"blur_kernel_size": 4}, r"HeatmapCodec: blur_kernel_size must be an odd integer >= 1"),
        ({"heatmap_size": (48,)}, r"HeatmapCodec: heatmap_size must be \[width, height\]"),
        ({"unbiased": "yes"}, r"HeatmapCodec: unbiased must be True or False"),
    ],
)
def test_invalid_options_name_the_class_and_allowed_values(kwargs, message):
    with pytest.raises(CodecError, match=message) as info:
        HeatmapCodec(**kwargs)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_wrong_heatmap_shape_is_reported():
    codec = HeatmapCodec(INPUT, HEATMAP)
    with pytest.raises(CodecError, match=r"heatmaps must be \(N, K, 64, 48\).*got shape \(2, 17, 48, 64\)"):
        codec.decode(np.zeros((2, 17, 48, 64)))
    with pytest.raises(CodecError, match=r"keypoints must be \(N, K, 2\)"):
        codec.encode(np.zeros((2, 17, 3)))


def test_empty_batch_and_tiny_maps():
    kp, scores = HeatmapCodec(INPUT, HEATMAP).decode(np.zeros((0, 17, 64, 48), np.float32))
    assert kp.shape == (0, 17, 2) and scores.shape == (0, 17)
    tiny = HeatmapCodec((4, 4), (2, 2), sigma=1.0)  # too small for DARK's stencil: plain argmax
    kp, _ = tiny.decode(tiny.encode([[3.0, 0.0]]).heatmaps)
    np.testing.assert_allclose(kp[0, 0], [3.0, 0.0])
