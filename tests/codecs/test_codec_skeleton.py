"""Skeleton definitions: COCO-17 order, flip pairs, bones, lookup by name, remapping."""

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.skeleton import (
    BODY25,
    BODY25_TO_COCO17,
    COCO17,
    SKELETONS,
    Skeleton,
    get_skeleton,
    remap_joints,
    resolve_skeleton,
)

COCO_ORDER = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip


def test_coco17_matches_design_order():
    assert list(COCO17.joint_names) == COCO_ORDER
    assert COCO17.num_joints == 17
    assert COCO17.index("left_wrist") == 9


def test_coco17_visit_order_is_higherhrnet():
    assert COCO17.visit_order == tuple(
        i - 1 for i in (1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14, 15, 16, 17)
    )


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_flip_pairs_swap_left_and_right(skeleton):
    names = skeleton.joint_names
    for left, right in skeleton.flip_pairs:
        assert names[left].startswith("left_") and names[right] == "right_" + names[left][5:]
    perm = np.array(skeleton.flip_indices)
    np.testing.assert_array_equal(perm[perm], np.arange(skeleton.num_joints))
    unpaired = [n for i, n in enumerate(names) if perm[i] == i]
    assert not any(n.startswith(("left_", "right_")) for n in unpaired)


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_bones_touch_every_joint_and_are_mirror_symmetric(skeleton):
    assert {j for bone in skeleton.bones for j in bone} == set(range(skeleton.num_joints))
    perm = skeleton.flip_indices
    bones = {frozenset(b) for b in skeleton.bones}
    assert {frozenset((perm[a], perm[b])) for a, b in skeleton.bones} == bones


def test_coco17_bones_are_the_rigid_segments():
    names = {(COCO17.joint_names[a], COCO17.joint_names[b]) for a, b in COCO17.bones}
    assert ("left_shoulder", "left_elbow") in names and ("left_knee", "left_ankle") in names
    assert not any("ear" in a and "shoulder" in b for a, b in names)  # the neck bends


def test_flip_keypoints_mirrors_and_is_an_involution():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (3, 17, 2)), rng.uniform(0, 1, (3, 17, 1))], axis=-1)
    flipped = COCO17.flip_keypoints(kp, image_width=101)
    assert flipped[0, 1, 0] == pytest.approx(100 - kp[0, 2, 0])  # left eye <- mirrored right eye
    assert flipped[0, 1, 2] == kp[0, 2, 2]
    np.testing.assert_allclose(COCO17.flip_keypoints(flipped, 101), kp)


def test_get_skeleton_by_name_and_aliases():
    assert get_skeleton("coco17") is COCO17
    assert get_skeleton("COCO-17") is COCO17
    assert get_skeleton("coco") is COCO17
    assert get_skeleton("BODY_25") is BODY25
    assert resolve_skeleton(BODY25) is BODY25


def test_unknown_skeleton_lists_known_names():
    with pytest.raises(ConfigError, match=r"unknown skeleton 'h36m'.*body25, coco17"):
        get_skeleton("h36m")


def test_unknown_joint_lists_names():
    with pytest.raises(ConfigError, match=r"no joint 'neck'.*nose"):
        COCO17.index("neck")


def test_body25_to_coco17_mapping_by_name():
    assert len(BODY25_TO_COCO17) == 17
    for coco_index, body_index in enumerate(BODY25_TO_COCO17):
        assert BODY25.joint_names[body_index] == COCO17.joint_names[coco_index]
    body = np.random.default_rng(1).normal(size=(4, 25, 3))
    np.testing.assert_array_equal(remap_joints(body, BODY25, COCO17), body[:, list(BODY25_TO_COCO17)])


def test_remap_marks_joints_the_source_lacks_as_missing():
    coco = np.ones((2, 17, 3))
    body = remap_joints(coco, COCO17, BODY25)
    neck = BODY25.index("neck")
    assert np.isnan(body[:, neck, :2]).all() and (body[:, neck, 2] == 0).all()
    assert np.isfinite(body[:, BODY25.index("nose")]).all()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"flip_pairs": ((0, 3),)}, "flip_pairs pair"),
        ({"visit_order": (0, 0, 1)}, "visit_order"),
        ({"bones": ((0, 1), (1, 0))}, "same pair twice"),
        ({"joint_names": ("a", "a", "b")}, "unique"),
    ],
)
def test_invalid_skeleton_is_rejected(fields, message):
    base = {
        "name": "tiny",
        "joint_names": ("a", "b", "c"),
        "flip_pairs": (),
        "bones": ((0, 1), (0, 2)),
        "limbs": (),
        "visit_order": (0, 1, 2),
    }
    with pytest.raises(ConfigError, match=message):
        Skeleton(**{**base, **fields})
