"""Synthetic multi-person heatmaps and tag maps with known identities, for AE tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.skeleton import COCO17, Skeleton

# A standing COCO-17 person about 40 heatmap pixels tall, (x, y) offsets from the mid-torso.
_COCO_TEMPLATE = np.array(
    [
        (0, -18), (2, -19), (-2, -19), (4, -18), (-4, -18), (7, -12), (-7, -12), (9, -4), (-9, -4),
        (10, 3), (-10, 3), (5, 2), (-5, 2), (5, 11), (-5, 11), (5, 20), (-5, 20),
    ],
    dtype=np.float64,
)  # fmt: skip


@dataclass(frozen=True)
class AEScene:
    """One synthetic image: heatmaps (K, H, W), tags (K, H, W), ground truth in heatmap pixels.

    Attributes:
        heatmaps: (K, H, W) float32, per joint the max over persons of peak * Gaussian.
        tags: (K, H, W) float32, the tag of the person dominating each pixel, plus noise.
        joints: (P, K, 2) int64 joint positions (x, y).
        present: (P, K) bool, joints drawn into the maps.
        person_tags: (P,) float64 true tag of each person.
    """

    heatmaps: np.ndarray
    tags: np.ndarray
    joints: np.ndarray
    present: np.ndarray
    person_tags: np.ndarray


def synthetic_ae_scene(
    rng: np.random.Generator,
    n_people: int,
    heatmap_size: tuple[int, int] = (128, 128),
    sigma: float = 2.0,
    tag_spacing: float = 1.0,
    tag_noise: float = 0.0,
    missing_fraction: float = 0.0,
    min_separation: float = 8.0,
    skeleton: Skeleton = COCO17,
) -> AEScene:
    """Overlapping COCO-17 people at random scales; tags 0, s, 2s, ... shuffled over people.

    Same-type joints of different people are kept ``min_separation`` px apart so that NMS can
    separate them (people themselves overlap freely). ``missing_fraction`` of the joints are
    left out of the maps (each person keeps at least its first visited joint).
    """
    if skeleton.num_joints != len(_COCO_TEMPLATE):
        raise ValueError("synthetic_ae_scene: only a 17-joint template is defined")
    w, h = heatmap_size
    k = skeleton.num_joints
    joints: list[np.ndarray] = []
    for _ in range(200 * n_people):
        if len(joints) == n_people:
            break
        pose = _COCO_TEMPLATE * rng.uniform(0.6, 1.3) + rng.uniform(-1.5, 1.5, size=(k, 2))
        lo, hi = pose.min(axis=0), pose.max(axis=0)
        centre = rng.uniform(2 - lo, np.array([w - 3, h - 3]) - hi)
        pose = np.round(pose + centre).astype(np.int64)
        if all(np.linalg.norm(pose - other, axis=1).min() >= min_separation for other in joints):
            joints.append(pose)
    if len(joints) < n_people:
        raise ValueError(f"synthetic_ae_scene: could not place {n_people} people in {w} x {h}")
    gt = np.stack(joints)
    present = rng.random((n_people, k)) >= missing_fraction
    present[:, skeleton.visit_order[0]] = True
    person_tags = rng.permutation(n_people) * tag_spacing
    peak = rng.uniform(0.6, 1.0, size=(n_people, k)) * present
    xs, ys = np.arange(w), np.arange(h)
    gx = np.exp(-((xs - gt[..., 0:1]) ** 2) / (2 * sigma**2))  # (P, K, W)
    gy = np.exp(-((ys - gt[..., 1:2]) ** 2) / (2 * sigma**2))  # (P, K, H)
    contrib = peak[..., None, None] * gy[..., :, None] * gx[..., None, :]  # (P, K, H, W)
    heatmaps = contrib.max(axis=0).astype(np.float32)
    tags = person_tags[contrib.argmax(axis=0)] + rng.normal(0.0, tag_noise, size=(k, h, w)) * (tag_noise > 0)
    return AEScene(heatmaps, tags.astype(np.float32), gt, present, person_tags)


def grouping_accuracy(keypoints: np.ndarray, scene: AEScene, tolerance: float = 1.0) -> float:
    """Fraction of the scene's present joints that land in their own person's group.

    Each predicted joint is owned by the true person whose same joint lies within
    ``tolerance`` px; true and predicted persons are paired one-to-one to maximize shared
    joints, and the joints shared by the pairs count as correct. A split person or two merged
    people therefore lose the joints outside the pairing.

    Args:
        keypoints: (P', K, 2+) predicted positions in heatmap pixels, NaN where missing.
        scene: the ground truth.
    """
    p_true = scene.joints.shape[0]
    if len(keypoints) == 0:
        return 0.0
    d = np.linalg.norm(keypoints[:, None, :, :2] - scene.joints[None, :, :, :], axis=-1)  # (P', P, K)
    d = np.where(scene.present[None], d, np.inf)
    d = np.where(np.isnan(d), np.inf, d)
    owner = np.where(d.min(axis=1) <= tolerance, d.argmin(axis=1), -1)  # (P', K)
    overlap = np.stack([(owner == t).sum(axis=1) for t in range(p_true)])  # (P, P')
    rows, cols = linear_sum_assignment(-overlap)
    return float(overlap[rows, cols].sum() / scene.present.sum())
