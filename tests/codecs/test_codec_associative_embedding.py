"""AssociativeEmbeddingCodec: targets, HigherHRNet grouping on synthetic scenes, temporal ids."""

import numpy as np
import pytest
from scipy import ndimage

from pipeline.codecs import AssociativeEmbeddingCodec, CodecError, TagTracker, max_pool_peaks
from pipeline.codecs._reference import decode_ae_loop
from pipeline.codecs._testing import grouping_accuracy, synthetic_ae_scene
from pipeline.errors import ConfigError
from pipeline.skeleton import COCO17

SIZE = (128, 128)  # input = heatmap size, so decoded keypoints are in heatmap pixels


def _codec(**kwargs):
    return AssociativeEmbeddingCodec(input_size=SIZE, heatmap_size=SIZE, **kwargs)


def test_encode_shapes_indices_and_max_composition():
    codec = AssociativeEmbeddingCodec(input_size=(512, 512), heatmap_size=SIZE)
    kp = np.stack([np.full((17, 2), 40.0), np.full((17, 2), 400.0)])
    kp[1, 3] = np.nan
    t = codec.encode(kp, keypoints_visible=np.ones((2, 17)))
    assert t.heatmaps.shape == (17, 128, 128) and t.heatmaps.dtype == np.float32
    assert t.keypoint_indices.shape == (2, 17) and t.keypoint_weights.shape == (2, 17)
    cell = np.round(codec.scale * 40.0).astype(int)
    assert t.keypoint_indices[0, 0] == cell[1] * 128 + cell[0]
    assert t.keypoint_indices[1, 3] == -1 and t.keypoint_weights[1, 3] == 0
    assert t.heatmaps.max() <= 1.0 and t.heatmaps[0].max() > 0.9


def test_encode_then_decode_with_tags_at_the_target_indices():
    codec = AssociativeEmbeddingCodec(input_size=(509, 509), heatmap_size=SIZE)  # 4 input px per heatmap px
    rng = np.random.default_rng(0)
    scene = synthetic_ae_scene(rng, 6)
    kp = scene.joints / codec.scale  # exactly on heatmap pixels
    t = codec.encode(kp)
    tags = np.zeros((17, 128 * 128), np.float32)
    for person in range(len(kp)):
        tags[np.arange(17), t.keypoint_indices[person]] = person
    persons = codec.decode(t.heatmaps, tags.reshape(17, 128, 128))
    assert len(persons) == 6
    order = np.argsort(persons.tags[:, 0])
    np.testing.assert_allclose(persons.keypoints[order, :, :2], kp, atol=1e-3)
    np.testing.assert_allclose(persons.tags[order, 0], np.arange(6))
    assert (persons.keypoints[..., 2] > 0.99).all() and not persons.filled.any()


@pytest.mark.parametrize("n_people", [1, 2, 8, 20])
def test_perfect_tags_group_everyone_correctly(n_people):
    codec = _codec()
    rng = np.random.default_rng(n_people)
    for _ in range(2):
        scene = synthetic_ae_scene(rng, n_people)
        persons = codec.decode(scene.heatmaps, scene.tags)
        assert len(persons) == n_people
        assert grouping_accuracy(persons.keypoints, scene) == 1.0
        np.testing.assert_allclose(np.sort(persons.tags[:, 0]), np.sort(scene.person_tags), atol=1e-6)


def test_noisy_tags_group_at_least_99_percent():
    codec = _codec()
    rng = np.random.default_rng(7)
    correct = total = 0
    for _ in range(8):
        scene = synthetic_ae_scene(rng, 20, tag_noise=0.2, tag_spacing=1.0)
        persons = codec.decode(scene.heatmaps, scene.tags)
        correct += grouping_accuracy(persons.keypoints, scene) * scene.present.sum()
        total += scene.present.sum()
    assert correct / total >= 0.99


def test_people_with_missing_joints_stay_one_person_each():
    codec = _codec()
    rng = np.random.default_rng(8)
    scene = synthetic_ae_scene(rng, 12, missing_fraction=0.35)
    persons = codec.decode(scene.heatmaps, scene.tags)
    assert len(persons) == 12
    assert grouping_accuracy(persons.keypoints, scene) == 1.0
    assert np.isnan(persons.keypoints[..., 0]).sum() == (~scene.present).sum()  # nothing invented


def test_a_person_with_only_head_and_left_arm():
    codec = _codec()
    scene = synthetic_ae_scene(np.random.default_rng(9), 1)
    keep = [0, 1, 2, 3, 4, 5, 7, 9]
    heatmaps = np.zeros_like(scene.heatmaps)
    heatmaps[keep] = scene.heatmaps[keep]
    persons = codec.decode(heatmaps, scene.tags)
    assert len(persons) == 1
    np.testing.assert_allclose(persons.keypoints[0, keep, :2], scene.joints[0, keep], atol=0.3)
    missing = np.setdiff1d(np.arange(17), keep)
    assert np.isnan(persons.keypoints[0, missing, :2]).all() and (persons.keypoints[0, missing, 2] == 0).all()
    assert persons.scores[0] == pytest.approx(persons.keypoints[0, keep, 2].sum() / 17, rel=1e-6)


def test_matches_the_higherhrnet_loop_and_batching():
    codec = _codec()
    rng = np.random.default_rng(10)
    scenes = [synthetic_ae_scene(rng, n, tag_noise=0.2, missing_fraction=0.1) for n in (5, 15, 20)]
    heatmaps = np.stack([s.heatmaps for s in scenes])
    tags = np.stack([s.tags for s in scenes])
    batched = codec.decode(heatmaps, tags)
    assert len(batched) == 3
    for persons, scene in zip(batched, scenes, strict=True):
        single = codec.decode(scene.heatmaps, scene.tags)
        np.testing.assert_array_equal(single.keypoints, persons.keypoints)
        joints, person_tags = decode_ae_loop(scene.heatmaps, scene.tags[..., None], COCO17.visit_order)
        assert joints.shape == persons.keypoints.shape
        kp = np.where(np.isnan(persons.keypoints), 0.0, persons.keypoints)
        np.testing.assert_allclose(kp, joints, atol=1e-5)
        np.testing.assert_allclose(persons.tags, person_tags, atol=1e-5)


def test_two_dimensional_tags():
    codec = _codec()
    scene = synthetic_ae_scene(np.random.default_rng(11), 10, tag_noise=0.1)
    one = codec.decode(scene.heatmaps, scene.tags)
    two = codec.decode(scene.heatmaps, np.stack([scene.tags, np.zeros_like(scene.tags)], axis=-1))
    assert two.tags.shape == (10, 2)
    np.testing.assert_array_equal(one.keypoints, two.keypoints)


def test_max_pool_peaks_matches_scipy():
    rng = np.random.default_rng(12)
    maps = rng.random((3, 17, 20, 24)).astype(np.float32)
    for kernel in (1, 3, 5):
        pooled = ndimage.maximum_filter(maps, size=(1, 1, kernel, kernel), mode="constant", cval=-np.inf)
        np.testing.assert_array_equal(max_pool_peaks(maps, kernel), np.where(pooled == maps, maps, 0))


def test_tag_tracker_keeps_ids_through_shuffles_drift_and_exits():
    tracker = TagTracker(tag_threshold=0.5, max_age=2)
    rng = np.random.default_rng(13)
    base = np.arange(5.0)
    ids_of = {}
    for frame in range(12):
        alive = np.arange(5) if frame < 6 else np.arange(4)  # person 4 leaves after frame 5
        order = rng.permutation(alive)
        tags = (base[order] + 0.02 * frame + rng.normal(0, 0.05, len(order)))[:, None]
        ids = tracker.update(tags)
        for person, track in zip(order, ids, strict=True):
            assert ids_of.setdefault(person, track) == track
    assert len(set(ids_of.values())) == 5
    assert len(tracker.ids) == 4  # the departed track was dropped after max_age frames
    newcomer = tracker.update(np.array([[10.0]]))
    assert newcomer[0] == 5


def test_decode_sequence_gives_stable_track_ids():
    codec = _codec()
    scene = synthetic_ae_scene(np.random.default_rng(14), 6)
    frames = codec.decode_sequence(np.stack([scene.heatmaps] * 3), np.stack([scene.tags] * 3))
    by_tag = [dict(zip(p.tags[:, 0].round(3), p.track_ids, strict=True)) for p in frames]
    assert by_tag[0] == by_tag[1] == by_tag[2] and len(by_tag[0]) == 6


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"skeleton": "h36m"}, ConfigError, r"unknown skeleton 'h36m'; known skeletons: body25, coco17"),
        ({"nms_kernel": 4}, CodecError, r"AssociativeEmbeddingCodec: nms_kernel must be an odd integer >= 1"),
        ({"max_people": 0}, CodecError, r"AssociativeEmbeddingCodec: max_people must be an integer >= 1"),
        ({"tag_threshold": -1}, CodecError, r"AssociativeEmbeddingCodec: tag_threshold must be a positive"),
        ({"adjust": None}, CodecError, r"AssociativeEmbeddingCodec: adjust must be True or False"),
    ],
)
def test_invalid_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        _codec(**kwargs)


def test_wrong_shapes_are_reported():
    codec = _codec()
    with pytest.raises(CodecError, match="heatmaps has 25 joints but skeleton 'coco17' has 17"):
        codec.decode(np.zeros((25, 128, 128)), np.zeros((25, 128, 128)))
    with pytest.raises(CodecError, match=r"tags must be heatmaps' shape"):
        codec.decode(np.zeros((17, 128, 128)), np.zeros((17, 64, 64)))


def test_empty_maps_give_no_people():
    persons = _codec().decode(np.zeros((17, 128, 128)), np.zeros((17, 128, 128)))
    assert len(persons) == 0 and persons.keypoints.shape == (0, 17, 3) and persons.tags.shape == (0, 1)


def test_flip_test_merge_of_a_mirrored_scene_decodes_the_same_people():
    """merge_flip_test mirrors the second output back (W axis) and swaps left/right joints.

    The mirror image's maps are built as a network would output them: the mirrored scene, whose
    left joints are the original's right ones. Merged with the original's maps they must decode to
    the original people; a wrong axis or a missing joint swap puts joints on the other side.
    """
    from pipeline.codecs import merge_flip_test

    codec = AssociativeEmbeddingCodec(input_size=(509, 509), heatmap_size=SIZE)
    scene = synthetic_ae_scene(np.random.default_rng(3), 4)
    kp = scene.joints / codec.scale
    flip = list(COCO17.flip_indices)
    mirrored_hm = scene.joints[:, flip].copy()
    mirrored_hm[..., 0] = (SIZE[0] - 1) - mirrored_hm[..., 0]  # heatmap x -> W - 1 - x
    mirrored = mirrored_hm / codec.scale
    maps = []
    for points in (kp, mirrored):
        t = codec.encode(points)
        tags = np.zeros((17, SIZE[0] * SIZE[1]), np.float32)
        for person in range(len(points)):
            tags[np.arange(17), t.keypoint_indices[person]] = person
        maps.append((t.heatmaps[None], tags.reshape(1, 17, *SIZE)))
    hm, tg = merge_flip_test(*maps[0], *maps[1], flip)
    assert hm.shape == (1, 17, *SIZE) and tg.shape == (1, 17, *SIZE, 2)
    np.testing.assert_allclose(hm[0], maps[0][0][0], atol=1e-6)  # the mirror maps back onto the original
    persons = codec.decode(hm, tg)[0]
    order = np.argsort(persons.tags[:, 0])
    np.testing.assert_allclose(persons.keypoints[order, :, :2], kp, atol=1e-3)
    np.testing.assert_allclose(persons.tags[order], np.stack([np.arange(4)] * 2, -1))
    with pytest.raises(CodecError):
        merge_flip_test(hm, tg[..., :1], hm[:, :, :-1], tg[..., :1], flip)
