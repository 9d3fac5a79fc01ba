"""Associative embedding (arXiv 1611.05424): bottom-up heatmaps plus tags, grouped as HigherHRNet.

Dimensions: N images, K joints, [w, h] the input image size in pixels, [W, H] the heatmap size,
L the tag dimension (1 usually; 2 with a flip test), M = ``max_people`` candidates per joint,
P the decoded persons of one image. Pixel coordinates follow OpenCV (integers at pixel
centres); input <-> heatmap use UDP's unbiased transform by default (see ``heatmap.py``).

Decoding one image:

1. Candidates: non-maximum suppression by max-pooling each joint's heatmap (``nms_kernel``),
   then the top-M peaks per joint with their tags (batched over images and joints).
2. Grouping: joint types are visited in the skeleton's ``visit_order`` (COCO: head,
   shoulders, hips, then limbs, as HigherHRNet). The first type seeds one group per candidate.
   For each later type the candidates above ``detection_threshold`` are matched to the groups
   by ``scipy.optimize.linear_sum_assignment`` on cost round(||tag - group tag||) * 100 - heat;
   a match is kept only when the tag distance is below ``tag_threshold``, else the candidate
   starts a new person. Each group's tag is the running mean of its members' tags, updated
   incrementally (Robbins-Monro: mean += (tag - mean) / n).
3. Missing joints of each person are filled from the full heatmap at the pixel maximizing
   heat - round(||tag(pixel) - person tag||) (HigherHRNet's refine), kept if its heat is > 0
   and, unlike HigherHRNet, its tag distance is below ``tag_threshold``, so that a person
   never takes another person's joint; vectorized over all missing (person, joint) pairs.
4. Every joint moves a quarter pixel towards its higher neighbour (``adjust``).

Temporal mode: :class:`TagTracker` carries person tags across frames with the same incremental
mean, so a person keeps one track id while the network's tags stay consistent over time.

Example::

    codec = AssociativeEmbeddingCodec(input_size=(512, 512), heatmap_size=(128, 128))
    persons = codec.decode(heatmaps, tags)   # heatmaps (K, H, W), tags (K, H, W) or (K, H, W, L)
    persons.keypoints                        # (P, K, 3): x, y in input pixels, score
    persons.tags                             # (P, L)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.codecs._common import (
    CodecError,
    as_array,
    check_int,
    check_keypoints,
    check_positive,
    check_size,
    resolution_scale,
)
from pipeline.codecs._refine import quarter_offsets_2d
from pipeline.skeleton import COCO17, Skeleton, resolve_skeleton

__all__ = ["AEPersons", "AETargets", "AssociativeEmbeddingCodec", "TagTracker", "max_pool_peaks", "merge_flip_test"]

_FILL_CHUNK = 64  # persons per vectorized fill step: bounds memory to 64 x H x W floats


def merge_flip_test(heatmaps: Any, tags: Any, flipped_heatmaps: Any, flipped_tags: Any,
                    flip_indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Bottom-up flip test (HigherHRNet): combine the outputs on an image and on its mirror.

    The mirror's maps are mirrored back along W with the left/right joints swapped; heatmaps are
    averaged and the tags concatenated (L -> 2L), so grouping compares both tag sets.

    Args:
        heatmaps, flipped_heatmaps: (N, K, H, W). tags, flipped_tags: (N, K, H, W, L) (or (N, K, H, W)).
        flip_indices: (K,) the joint each joint becomes in the mirror image.

    Returns:
        heatmaps (N, K, H, W) and tags (N, K, H, W, 2L), float32.
    """
    hm, hf = (as_array(a, "merge_flip_test", "heatmaps", np.float32) for a in (heatmaps, flipped_heatmaps))
    tg, tf = (as_array(a, "merge_flip_test", "tags", np.float32) for a in (tags, flipped_tags))
    tg, tf = (t[..., None] if t.ndim == 4 else t for t in (tg, tf))
    if hm.shape != hf.shape or tg.shape != tf.shape or tg.shape[:4] != hm.shape:
        raise CodecError(f"merge_flip_test: shapes differ: heatmaps {hm.shape} / {hf.shape}, tags {tg.shape} / "
                         f"{tf.shape}")
    idx = list(flip_indices)
    back_hm = hf[:, idx, :, ::-1]
    back_tg = tf[:, idx, :, ::-1, :]
    return (hm + back_hm) / 2, np.concatenate([tg, back_tg], axis=-1)


@dataclass(frozen=True)
class AETargets:
    """Training targets from :meth:`AssociativeEmbeddingCodec.encode` (one image).

    Attributes:
        heatmaps: (K, H, W) float32, per joint the maximum over instances of their Gaussians.
        keypoint_indices: (N, K) int64 flat heatmap index y * W + x of each joint (rounded),
            where the tag loss reads the tag map; -1 where the joint is not used.
        keypoint_weights: (N, K) float32 visibility, 0 where unused.
    """

    heatmaps: np.ndarray
    keypoint_indices: np.ndarray
    keypoint_weights: np.ndarray


@dataclass(frozen=True)
class AEPersons:
    """The persons decoded from one image.

    Attributes:
        keypoints: (P, K, 3) float32: x, y in input pixels and the heat score; a missing joint
            is x = y = NaN, score 0.
        tags: (P, L) float32, each person's mean tag.
        scores: (P,) float32, mean joint score (missing joints count 0).
        filled: (P, K) bool, joints filled from the full heatmap rather than grouped.
        track_ids: (P,) int64 from :class:`TagTracker`, or None outside temporal mode.
    """

    keypoints: np.ndarray
    tags: np.ndarray
    scores: np.ndarray
    filled: np.ndarray
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


def max_pool_peaks(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Heatmap NMS: keep values equal to the maximum of their kernel x kernel window, else 0.

    Args:
        heatmaps: (..., H, W) float.
        kernel: odd window side.

    Returns:
        (..., H, W) same dtype; ties in a window all survive.
    """
    if kernel == 1:
        return heatmaps.copy()
    r = kernel // 2
    h, w = heatmaps.shape[-2:]
    lead = heatmaps.shape[:-2]
    pad = np.full((*lead, h + 2 * r, w + 2 * r), -np.inf, dtype=heatmaps.dtype)
    pad[..., r : r + h, r : r + w] = heatmaps
    rows = np.maximum(pad[..., 0:h, :], pad[..., 1 : h + 1, :])  # separable max: rows, then columns
    for i in range(2, kernel):
        np.maximum(rows, pad[..., i : i + h, :], out=rows)
    pooled = np.maximum(rows[..., 0:w], rows[..., 1 : w + 1])
    for i in range(2, kernel):
        np.maximum(pooled, rows[..., i : i + w], out=pooled)
    return np.where(pooled == heatmaps, heatmaps, 0)


class AssociativeEmbeddingCodec:
    """Encode multi-person heatmap targets; decode heatmaps plus tag maps into persons.

    Args:
        input_size: [w, h] of the network input in pixels.
        heatmap_size: [W, H] of the heatmaps and tag maps.
        sigma: Gaussian sigma of the heatmap targets in heatmap pixels.
        skeleton: a :class:`~pipeline.skeleton.Skeleton` or its name; gives K and visit_order.
        max_people: M, candidates kept per joint type and groups a candidate can join.
        nms_kernel: odd side of the max-pooling window.
        detection_threshold: candidates with heat <= this are ignored (0 <= value).
        tag_threshold: largest tag distance at which a candidate joins a group (> 0).
        use_detection_val: cost round(distance) * 100 - heat (HigherHRNet); else the distance.
        adjust: quarter-pixel refinement of every joint.
        fill_missing: fill missing joints from the full heatmap with the person's tag.
        unbiased: UDP's (size - 1) scaling between input and heatmap.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (512, 512),
        heatmap_size: tuple[int, int] = (128, 128),
        sigma: float = 2.0,
        skeleton: str | Skeleton = COCO17,
        max_people: int = 30,
        nms_kernel: int = 5,
        detection_threshold: float = 0.1,
        tag_threshold: float = 1.0,
        use_detection_val: bool = True,
        adjust: bool = True,
        fill_missing: bool = True,
        unbiased: bool = True,
    ) -> None:
        name = type(self).__name__
        self.input_size = check_size(input_size, name, "input_size")
        self.heatmap_size = check_size(heatmap_size, name, "heatmap_size")
        self.sigma = check_positive(sigma, name, "sigma")
        self.skeleton = resolve_skeleton(skeleton)
        self.max_people = check_int(max_people, name, "max_people", 1)
        self.nms_kernel = check_int(nms_kernel, name, "nms_kernel", 1)
        if self.nms_kernel % 2 == 0:
            raise CodecError(f"{name}: nms_kernel must be an odd integer >= 1; got {nms_kernel!r}")
        try:
            self.detection_threshold = float(detection_threshold)
            ok = self.detection_threshold >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CodecError(
                f"{name}: detection_threshold must be a number >= 0; got {detection_threshold!r}"
            )
        self.tag_threshold = check_positive(tag_threshold, name, "tag_threshold")
        flags = {"use_detection_val": use_detection_val, "adjust": adjust, "fill_missing": fill_missing}
        for flag, value in {**flags, "unbiased": unbiased}.items():
            if not isinstance(value, bool):
                raise CodecError(f"{name}: {flag} must be True or False; got {value!r}")
        self.use_detection_val = use_detection_val
        self.adjust = adjust
        self.fill_missing = fill_missing
        self.unbiased = unbiased
        self.scale = resolution_scale(self.input_size, self.heatmap_size, self.unbiased)

    # ----------------------------------------------------------------------------- encode

    def encode(self, keypoints: Any, keypoints_visible: Any = None) -> AETargets:
        """Heatmap targets and tag indices for all instances of one image.

        Args:
            keypoints: (N, K, 2) input pixels, NaN for missing joints.
            keypoints_visible: (N, K) weights in [0, 1], default 1.

        Returns:
            :class:`AETargets`.
        """
        kp, vis, _ = check_keypoints(keypoints, keypoints_visible, type(self).__name__)
        self._check_k(kp.shape[1], "keypoints")
        hw, hh = self.heatmap_size
        mu = kp * self.scale
        finite = np.isfinite(mu).all(axis=-1)
        mu = np.where(finite[..., None], mu, -1e6)
        r = 3.0 * self.sigma
        near = (mu[..., 0] > -r - 1) & (mu[..., 0] < hw + r) & (mu[..., 1] > -r - 1) & (mu[..., 1] < hh + r)
        weights = np.where(finite & near, vis, 0.0)
        on = weights > 0
        two_var = 2.0 * self.sigma**2
        gx = np.exp(-((np.arange(hw) - mu[..., 0:1]) ** 2) / two_var) * on[..., None]
        gy = np.exp(-((np.arange(hh) - mu[..., 1:2]) ** 2) / two_var)
        heatmaps = np.zeros((kp.shape[1], hh, hw), np.float32)
        if kp.shape[0]:
            heatmaps = (gy[..., :, None] * gx[..., None, :]).max(axis=0).astype(np.float32)
        c = np.round(mu).astype(np.int64)
        used = on & (c[..., 0] >= 0) & (c[..., 0] < hw) & (c[..., 1] >= 0) & (c[..., 1] < hh)
        indices = np.where(used, c[..., 1] * hw + c[..., 0], -1)
        return AETargets(heatmaps, indices, np.where(used, weights, 0.0).astype(np.float32))

    # ----------------------------------------------------------------------------- decode

    def _check_k(self, k: int, what: str) -> None:
        if k != self.skeleton.num_joints:
            raise CodecError(
                f"{type(self).__name__}: {what} has {k} joints but skeleton {self.skeleton.name!r} has "
                f"{self.skeleton.num_joints}"
            )

    def _inputs(self, heatmaps: Any, tags: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """Validate and batch: heatmaps (N, K, H, W) float32, tags (N, K, H, W, L) float32."""
        name = type(self).__name__
        hm = as_array(heatmaps, name, "heatmaps", np.float32)
        tg = as_array(tags, name, "tags", np.float32)
        single = hm.ndim == 3
        if single:
            hm, tg = hm[None], tg[None]
        hw, hh = self.heatmap_size
        if hm.ndim != 4 or hm.shape[2:] != (hh, hw):
            raise CodecError(
                f"{name}: heatmaps must be (N, K, {hh}, {hw}) or (K, {hh}, {hw}); got {hm.shape}"
            )
        if tg.ndim == 4:
            tg = tg[..., None]
        if tg.ndim != 5 or tg.shape[:4] != hm.shape:
            raise CodecError(
                f"{name}: tags must be heatmaps' shape {hm.shape[1:]} plus an optional L; got {tg.shape}"
            )
        self._check_k(hm.shape[1], "heatmaps")
        return hm, tg, single

    def candidates(self, heatmaps: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, ...]:
        """Top-M NMS peaks per image and joint, batched.

        Args:
            heatmaps: (N, K, H, W) float32; tags: (N, K, H, W, L) float32.

        Returns:
            vals (N, K, M), x (N, K, M) int64, y (N, K, M) int64, tags (N, K, M, L); sorted by
            decreasing heat (ties by flat index); M = min(max_people, H * W).
        """
        n, k, hh, hw = heatmaps.shape
        flat = max_pool_peaks(heatmaps, self.nms_kernel).reshape(n, k, hh * hw)
        m = min(self.max_people, hh * hw)
        idx = (
            np.argpartition(-flat, m - 1, axis=-1)[..., :m]
            if m < hh * hw
            else np.broadcast_to(np.arange(hh * hw), flat.shape)
        )
        vals = np.take_along_axis(flat, idx, axis=-1)
        order = np.lexsort((idx, -vals), axis=-1)
        idx = np.take_along_axis(idx, order, axis=-1)
        vals = np.take_along_axis(vals, order, axis=-1)
        tag_flat = tags.reshape(n, k, hh * hw, tags.shape[-1])
        cand_tags = np.take_along_axis(tag_flat, idx[..., None], axis=2)
        return vals, idx % hw, idx // hw, cand_tags

    def group(
        self, vals: np.ndarray, x: np.ndarray, y: np.ndarray, tags: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Group one image's candidates into persons (HigherHRNet matching, incremental tag means).

        Args:
            vals, x, y: (K, M) candidate heat and integer heatmap position.
            tags: (K, M, L) candidate tags.

        Returns:
            joints (G, K, 3) float64 [x, y, heat] in heatmap pixels, heat 0 where missing;
            group_tags (G, L) float64 running means.
        """
        k_joints, m, dim = tags.shape
        joints = np.zeros((k_joints * m, k_joints, 3))
        means = np.zeros((k_joints * m, dim))
        counts = np.zeros(k_joints * m)
        n_groups = 0
        for k in self.skeleton.visit_order:
            keep = vals[k] > self.detection_threshold
            if not keep.any():
                continue
            cand = np.stack([x[k][keep], y[k][keep], vals[k][keep]], axis=1).astype(np.float64)
            t = tags[k][keep].astype(np.float64)
            new = np.ones(len(cand), bool)
            if n_groups:
                g = min(n_groups, self.max_people)
                dist = np.sqrt(((t[:, None, :] - means[None, :g, :]) ** 2).sum(axis=-1))
                cost = np.round(dist) * 100 - cand[:, 2:3] if self.use_detection_val else dist
                rows, cols = linear_sum_assignment(cost)
                ok = dist[rows, cols] < self.tag_threshold
                rows, cols = rows[ok], cols[ok]
                joints[cols, k] = cand[rows]
                counts[cols] += 1
                means[cols] += (t[rows] - means[cols]) / counts[cols, None]
                new[rows] = False
            added = np.flatnonzero(new)
            slots = np.arange(n_groups, n_groups + added.size)
            joints[slots, k] = cand[added]
            means[slots] = t[added]
            counts[slots] = 1
            n_groups += added.size
        return joints[:n_groups], means[:n_groups]

    def _fill(self, joints: np.ndarray, means: np.ndarray, hm: np.ndarray, tg: np.ndarray) -> np.ndarray:
        """Fill missing joints in place from the full maps; returns the (G, K) filled mask.

        Loops over joint types (and chunks of persons, bounding memory); each step scores all
        pixels for all persons missing that joint at once, in place, in float32.
        """
        hw = hm.shape[2]
        dim = tg.shape[-1]
        filled = np.zeros(joints.shape[:2], bool)
        missing = joints[:, :, 2] == 0
        means32 = means.astype(np.float32)
        for k in np.flatnonzero(missing.any(axis=0)):
            heat = hm[k].reshape(-1)
            tags_k = tg[k].reshape(-1, dim)
            groups = np.flatnonzero(missing[:, k])
            for s in range(0, groups.size, _FILL_CHUNK):
                g = groups[s : s + _FILL_CHUNK]
                mu = means32[g]  # (m, L)
                if dim == 1:
                    score = np.subtract(tags_k[:, 0], mu)  # (m, H W)
                    np.abs(score, out=score)
                else:
                    score = np.sqrt(((tags_k[None, :, :] - mu[:, None, :]) ** 2).sum(axis=-1))
                np.round(score, out=score)
                np.subtract(heat, score, out=score)
                loc = np.argmax(score, axis=1)
                dist = np.sqrt(((tags_k[loc] - mu) ** 2).sum(axis=-1))
                val = heat[loc]
                ok = (val > 0) & (dist < self.tag_threshold)
                joints[g[ok], k] = np.stack([loc % hw, loc // hw, val], axis=1)[ok]
                filled[g[ok], k] = True
        return filled

    def decode(self, heatmaps: Any, tags: Any) -> AEPersons | list[AEPersons]:
        """Persons from heatmaps and tag maps.

        Args:
            heatmaps: (K, H, W) for one image or (N, K, H, W), numpy or torch.
            tags: heatmaps' shape, optionally with a trailing L (tag dimension).

        Returns:
            :class:`AEPersons` for one image, or a list of N of them.
        """
        hm, tg, single = self._inputs(heatmaps, tags)
        vals, xs, ys, ctags = self.candidates(hm, tg)
        out = [self._decode_one(hm[i], tg[i], vals[i], xs[i], ys[i], ctags[i]) for i in range(hm.shape[0])]
        return out[0] if single else out

    def _decode_one(self, hm, tg, vals, xs, ys, ctags) -> AEPersons:
        joints, means = self.group(vals, xs, ys, ctags)
        k = hm.shape[0]
        filled = self._fill(joints, means, hm, tg) if self.fill_missing else np.zeros(joints.shape[:2], bool)
        present = joints[:, :, 2] > 0
        xy = joints[:, :, :2]
        if self.adjust and present.any():
            g, j = np.nonzero(present)
            cx, cy = xy[g, j, 0].astype(np.int64), xy[g, j, 1].astype(np.int64)
            xy[g, j] += quarter_offsets_2d(hm, cx, cy, map_index=j)
        kp = np.concatenate([xy / self.scale, joints[:, :, 2:3]], axis=-1)
        kp[~present, :2] = np.nan
        scores = joints[:, :, 2].sum(axis=1) / k
        return AEPersons(kp.astype(np.float32), means.astype(np.float32), scores.astype(np.float32), filled)

    def decode_sequence(self, heatmaps: Any, tags: Any, tracker: TagTracker | None = None) -> list[AEPersons]:
        """Temporal mode: decode T frames and give each person a track id by its tag.

        Args:
            heatmaps: (T, K, H, W); tags: (T, K, H, W) or (T, K, H, W, L).
            tracker: carries tags from earlier calls; a new ``TagTracker(tag_threshold)`` if None.

        Returns:
            T :class:`AEPersons` with ``track_ids`` set.
        """
        tracker = tracker if tracker is not None else TagTracker(self.tag_threshold)
        frames = self.decode(heatmaps, tags)
        if isinstance(frames, AEPersons):
            raise CodecError(f"{type(self).__name__}.decode_sequence: heatmaps must be (T, K, H, W)")
        return [replace(p, track_ids=tracker.update(p.tags)) for p in frames]


class TagTracker:
    """Stable person ids over time from AE tags, with incremental-mean tag memories.

    Each track keeps the running mean of the tags matched to it (mean += (tag - mean) / n, with
    n capped at ``memory`` when given, which turns it into an exponential average that follows
    slow drift). Each frame, persons and tracks are matched by linear_sum_assignment on the tag
    distance; a match is kept below ``tag_threshold``, an unmatched person opens a new track,
    and a track unseen for more than ``max_age`` frames is dropped.

    Args:
        tag_threshold: largest tag distance for a match (> 0).
        memory: cap on n in the incremental mean, or None for the plain mean.
        max_age: frames a track survives unseen, or None to keep tracks forever.
    """

    def __init__(
        self, tag_threshold: float = 1.0, memory: int | None = None, max_age: int | None = None
    ) -> None:
        name = type(self).__name__
        self.tag_threshold = check_positive(tag_threshold, name, "tag_threshold")
        self.memory = None if memory is None else check_int(memory, name, "memory", 1)
        self.max_age = None if max_age is None else check_int(max_age, name, "max_age", 0)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks; ids restart at 0."""
        self.tags = np.zeros((0, 0))
        self.counts = np.zeros(0)
        self.ids = np.zeros(0, np.int64)
        self.ages = np.zeros(0, np.int64)
        self._next_id = 0

    def update(self, tags: Any) -> np.ndarray:
        """Match one frame's person tags (P, L) to the tracks; returns their ids (P,) int64."""
        t = as_array(tags, type(self).__name__, "tags", np.float64)
        if t.ndim != 2:
            raise CodecError(f"{type(self).__name__}: tags must be (P, L); got shape {t.shape}")
        if self.tags.shape[1] != t.shape[1]:
            if len(self.ids):
                raise CodecError(
                    f"{type(self).__name__}: tag dimension changed from {self.tags.shape[1]} to {t.shape[1]}"
                )
            self.tags = np.zeros((0, t.shape[1]))
        out = np.full(len(t), -1, np.int64)
        self.ages += 1
        if len(t) and len(self.ids):
            dist = np.sqrt(((t[:, None, :] - self.tags[None, :, :]) ** 2).sum(axis=-1))
            rows, cols = linear_sum_assignment(dist)
            ok = dist[rows, cols] < self.tag_threshold
            rows, cols = rows[ok], cols[ok]
            self.counts[cols] += 1
            n = self.counts[cols] if self.memory is None else np.minimum(self.counts[cols], self.memory)
            self.tags[cols] += (t[rows] - self.tags[cols]) / n[:, None]
            self.ages[cols] = 0
            out[rows] = self.ids[cols]
        new = np.flatnonzero(out < 0)
        new_ids = np.arange(self._next_id, self._next_id + new.size)
        self._next_id += new.size
        out[new] = new_ids
        self.tags = np.concatenate([self.tags, t[new]])
        self.counts = np.concatenate([self.counts, np.ones(new.size)])
        self.ids = np.concatenate([self.ids, new_ids])
        self.ages = np.concatenate([self.ages, np.zeros(new.size, np.int64)])
        if self.max_age is not None:
            keep = self.ages <= self.max_age
            self.tags, self.counts, self.ids, self.ages = (
                self.tags[keep],
                self.counts[keep],
                self.ids[keep],
                self.ages[keep],
            )
        return out
