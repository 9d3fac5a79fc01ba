"""Joint orders and skeletons shared by the codecs, the heads, triangulation and visualisation.

A :class:`Skeleton` names the joints in their array order and says which joints mirror each
other (``flip_pairs``), how they hang together (``bones``, the rigid segments as parent -> child
pairs, and ``limbs``, the links a drawing shows) and in which order associative-embedding
grouping visits the joint types (``visit_order``, HigherHRNet's head-first order).

The default is COCO-17, the joint order of every keypoint array in posecap (``DESIGN.md``).
Other skeletons are looked up by name with :func:`get_skeleton`.

Example::

    from pipeline.skeleton import COCO17, get_skeleton
    COCO17.index("left_wrist")          # 9
    body = get_skeleton("body25")
    coco = remap_joints(body_keypoints, body, COCO17)   # (..., 25, D) -> (..., 17, D)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError

__all__ = [
    "BODY25",
    "BODY25_TO_COCO17",
    "COCO17",
    "SKELETONS",
    "Skeleton",
    "get_skeleton",
    "remap_joints",
    "resolve_skeleton",
]


@dataclass(frozen=True)
class Skeleton:
    """A named joint order with its left/right mirror pairs and its bones.

    Attributes:
        name: short lower-case name, the key of :data:`SKELETONS`.
        joint_names: K joint names in array order (snake_case, ``left_*`` / ``right_*``).
        flip_pairs: (left, right) index pairs that swap when the image is mirrored.
        bones: (parent, child) index pairs, proximal -> distal, of the segments whose length
            is fixed in a person (head, upper and lower arms and legs, shoulder and hip width,
            torso sides); for bone-length priors. The torso makes it a graph, not a tree.
        limbs: (a, b) index pairs to draw; may hold cycles (e.g. the COCO torso quad).
        visit_order: a permutation of range(K); the order in which associative-embedding
            grouping visits joint types (most reliable, most central first).
    """

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    bones: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    visit_order: tuple[int, ...]

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        where = f"Skeleton {self.name!r}"
        if len(set(self.joint_names)) != k:
            raise ConfigError(f"{where}: joint_names must be unique")
        for field in ("flip_pairs", "bones", "limbs"):
            for a, b in getattr(self, field):
                if not (0 <= a < k and 0 <= b < k) or a == b:
                    raise ConfigError(f"{where}: {field} pair ({a}, {b}) is not two joints in 0..{k - 1}")
        flipped = [j for pair in self.flip_pairs for j in pair]
        if len(set(flipped)) != len(flipped):
            raise ConfigError(f"{where}: a joint appears in more than one flip pair")
        if sorted(self.visit_order) != list(range(k)):
            raise ConfigError(f"{where}: visit_order must be a permutation of 0..{k - 1}")
        if len({frozenset(b) for b in self.bones}) != len(self.bones):
            raise ConfigError(f"{where}: bones holds the same pair twice")

    @property
    def num_joints(self) -> int:
        """K, the number of joints."""
        return len(self.joint_names)

    def index(self, joint_name: str) -> int:
        """Array index of ``joint_name``; raises ConfigError listing the names if unknown."""
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise ConfigError(
                f"Skeleton {self.name!r} has no joint {joint_name!r}; joints: {', '.join(self.joint_names)}"
            ) from None

    @property
    def flip_indices(self) -> tuple[int, ...]:
        """Permutation p with p[j] = mirror joint of j (j itself for centre joints), length K."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    def flip_keypoints(self, keypoints: np.ndarray, image_width: float) -> np.ndarray:
        """Mirror keypoints left-right: swap flip pairs and map x -> image_width - 1 - x.

        Args:
            keypoints: (..., K, D) with D >= 2, x first, in pixels (integer x at pixel centres).
            image_width: w in pixels.

        Returns:
            (..., K, D) copy; columns after x are kept (y, score, ...).
        """
        keypoints = np.asarray(keypoints)
        if keypoints.ndim < 2 or keypoints.shape[-2] != self.num_joints or keypoints.shape[-1] < 2:
            raise ValueError(
                f"Skeleton.flip_keypoints: expected (..., {self.num_joints}, D>=2), got {keypoints.shape}"
            )
        out = keypoints[..., list(self.flip_indices), :].copy()
        out[..., 0] = image_width - 1 - out[..., 0]
        return out


_COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# Rigid segments, proximal -> distal: head, arms, legs, then shoulder / hip width and torso sides.
_COCO17_BONES = (
    (0, 1), (0, 2), (1, 3), (2, 4),
    (5, 7), (7, 9), (6, 8), (8, 10),
    (11, 13), (13, 15), (12, 14), (14, 16),
    (5, 6), (11, 12), (5, 11), (6, 12),
)  # fmt: skip

# COCO's 19 drawing links (person_keypoints "skeleton", made 0-based).
_COCO17_LIMBS = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

COCO17 = Skeleton(
    name="coco17",
    joint_names=_COCO17_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    bones=_COCO17_BONES,
    limbs=_COCO17_LIMBS,
    # HigherHRNet's joint_order: head, shoulders, hips, then the limbs outwards.
    visit_order=(0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16),
)

_BODY25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

_BODY25_TREE = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
    (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21),
    (11, 22), (22, 23), (11, 24),
)  # fmt: skip

_BODY25_FLIP = (
    (5, 2), (6, 3), (7, 4), (12, 9), (13, 10), (14, 11), (16, 15), (18, 17), (19, 22), (20, 23), (21, 24),
)  # fmt: skip

BODY25 = Skeleton(
    name="body25",
    joint_names=_BODY25_NAMES,
    flip_pairs=_BODY25_FLIP,
    bones=_BODY25_TREE,  # OpenPose POSE_BODY_25_PAIRS, parent -> child, rooted at the neck
    limbs=_BODY25_TREE,
    visit_order=(0, 1, 15, 16, 17, 18, 2, 5, 9, 12, 8, 3, 6, 4, 7, 10, 13, 11, 14, 19, 20, 21, 22, 23, 24),
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (COCO17, BODY25)}


def get_skeleton(name: str) -> Skeleton:
    """Skeleton by name, case-insensitive, ignoring '-' and '_' ("COCO-17" -> coco17).

    Raises:
        ConfigError: unknown name; the message lists the known names.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key == "coco":
        key = "coco17"
    if key not in SKELETONS:
        raise ConfigError(f"unknown skeleton {name!r}; known skeletons: {', '.join(sorted(SKELETONS))}")
    return SKELETONS[key]


def resolve_skeleton(skeleton: str | Skeleton) -> Skeleton:
    """Return ``skeleton`` itself if it is a Skeleton, else :func:`get_skeleton` of it."""
    return skeleton if isinstance(skeleton, Skeleton) else get_skeleton(skeleton)


def joint_map(src: Skeleton, dst: Skeleton) -> tuple[int, ...]:
    """For each joint of ``dst``, its index in ``src`` by name, or -1 if ``src`` lacks it."""
    return tuple(src.joint_names.index(n) if n in src.joint_names else -1 for n in dst.joint_names)


BODY25_TO_COCO17: tuple[int, ...] = joint_map(BODY25, COCO17)
"""BODY_25 index of each COCO-17 joint: ``coco = body25[..., BODY25_TO_COCO17, :]``."""


def remap_joints(keypoints: np.ndarray, src: Skeleton, dst: Skeleton) -> np.ndarray:
    """Reorder keypoints from ``src``'s joint order to ``dst``'s, matching joints by name.

    Args:
        keypoints: (..., K_src, D) float array.
        src, dst: the skeletons of the input and the output.

    Returns:
        (..., K_dst, D) float array; joints that ``src`` lacks get x = y = NaN and 0 in the
        columns after them (score), as posecap marks a missing joint.
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim < 2 or keypoints.shape[-2] != src.num_joints:
        raise ValueError(
            f"remap_joints: expected (..., {src.num_joints}, D) for {src.name}, got {keypoints.shape}"
        )
    index = np.array(joint_map(src, dst))
    out = keypoints[..., np.maximum(index, 0), :].astype(np.result_type(keypoints.dtype, np.float32))
    out[..., index < 0, :] = 0.0
    out[..., index < 0, :2] = np.nan
    return out
