"""Cross-view association: which 2D detection in each camera is the same person, per frame.

Two steps, as mvpose and 4DAssociation do:

1. Epipolar clustering. For every camera pair the symmetric epipolar distance between two
   detections (pixels, median over the joints both see) is computed for all frames at once.
   Per frame, detections are then merged greedily, cheapest pair first, into clusters that hold
   at most one detection per camera (so every cycle of matches is consistent) and whose mean
   pairwise distance stays under the threshold (average linkage).
2. Reprojection check. Each cluster is triangulated (consensus, all frames at once); duplicate
   clusters of one person are suppressed; then every detection is re-assigned, per camera, to
   the cluster whose reprojection it matches (one-to-one, cheapest first, gated). This moves
   detections a greedy epipolar merge got wrong. Clusters left with one view are dropped: a
   person seen by one camera is not triangulated. So is a cluster detected by fewer than
   ``min_view_share`` of the cameras its skeleton projects into: two detections of different
   people that agree along an epipolar line make a "ghost" that the other cameras do not see.

Arrays: ``uv`` (C, T, P, J, 2) distorted pixels with NaN where missing, ``w`` (C, T, P, J) weights
(0 where missing); ``members`` (T, K, C) int, the detection slot of camera c in cluster k, -1 none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from pipeline.geometry.rig import Rig
from pipeline.geometry.robust import RobustOptions, msac


@dataclass(frozen=True)
class AssociationOptions:
    """Settings of :func:`associate`.

    Attributes:
        epipolar_threshold_px: max median symmetric epipolar distance of one person, pixels.
        reprojection_threshold_px: max median reprojection distance when re-assigning, pixels.
        min_joints: detections with fewer observed joints are ignored.
        min_common_joints: joints two detections must share to be compared.
        duplicate_distance_m: clusters closer than this (mean joint distance) are one person.
        iterations: triangulate-and-reassign passes.
        min_view_share: a person must be detected in at least this share of the cameras whose
            image it projects into (half its joints inside the frame); fewer is a ghost, two
            detections of different people that happen to agree along an epipolar line.
    """

    epipolar_threshold_px: float = 25.0
    reprojection_threshold_px: float = 40.0
    min_joints: int = 5
    min_common_joints: int = 3
    duplicate_distance_m: float = 0.25
    iterations: int = 2
    min_view_share: float = 0.6


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _median_with_min(d: np.ndarray, min_count: int) -> np.ndarray:
    """Median over the last axis ignoring NaN; inf where fewer than ``min_count`` values."""
    count = np.isfinite(d).sum(-1)
    out = np.full(d.shape[:-1], np.inf)
    ok = count >= min_count
    if ok.any():
        out[ok] = np.nanmedian(d[ok], axis=-1)
    return out


def epipolar_costs(rig: Rig, xy: np.ndarray, det_ok: np.ndarray, min_common: int) -> np.ndarray:
    """Symmetric epipolar distance between every pair of detections of every camera pair.

    Args:
        xy: (C, T, P, J, 2) undistorted normalized coordinates, NaN where missing.
        det_ok: (C, T, P) bool, detections to consider.

    Returns:
        (T, C, P, C, P) costs in pixels; inf within a camera, for ignored detections and for
        pairs sharing fewer than ``min_common`` joints.
    """
    C, T, P = det_ok.shape
    cost = np.full((T, C, P, C, P), np.inf)
    hom = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)  # (C, T, P, J, 3)
    for a in range(C):
        for b in range(a + 1, C):
            R_ab = rig.R[b] @ rig.R[a].T
            E = _skew(rig.t[b] - R_ab @ rig.t[a]) @ R_ab  # x_b^T E x_a = 0
            la = hom[a] @ E.T  # lines in b: (T, P, J, 3)
            lb = hom[b] @ E  # lines in a
            num = np.abs(np.einsum("tqjk,tpjk->tpqj", hom[b], la))  # (T, Pa, Pb, J)
            with np.errstate(invalid="ignore", divide="ignore"):
                d_b = num / np.linalg.norm(la[..., :2], axis=-1)[:, :, None, :] * rig.focal_px[b]
                d_a = num / np.linalg.norm(lb[..., :2], axis=-1)[:, None, :, :] * rig.focal_px[a]
            med = _median_with_min(0.5 * (d_a + d_b), min_common)
            med[~det_ok[a]] = np.inf
            med[~det_ok[b][:, None, :].repeat(P, 1)] = np.inf
            cost[:, a, :, b, :] = med
            cost[:, b, :, a, :] = med.transpose(0, 2, 1)
    return cost


def greedy_clusters(cost: np.ndarray, threshold: float, show_progress: bool = False) -> np.ndarray:
    """Average-linkage greedy clustering with at most one detection per camera, per frame.

    Args:
        cost: (T, C, P, C, P) pairwise costs (inf = incompatible).
        threshold: max edge cost and max mean cross-cluster cost.

    Returns:
        members (T, K, C) int, -1 where a cluster has no detection in a camera; only clusters
        with at least two cameras are kept.
    """
    T, C, P = cost.shape[:3]
    flat = cost.reshape(T, C * P, C * P)
    t_idx, i_idx, j_idx = np.nonzero(np.triu(flat < threshold))
    order = np.lexsort((flat[t_idx, i_idx, j_idx], t_idx))
    t_idx, i_idx, j_idx = t_idx[order], i_idx[order], j_idx[order]
    bounds = np.searchsorted(t_idx, np.arange(T + 1))
    frames: list[list[list[int]]] = []
    for t in tqdm(range(T), desc="associate", unit="frame", disable=not show_progress or T < 1000):
        lo, hi = bounds[t], bounds[t + 1]
        owner: dict[int, int] = {}
        clusters: dict[int, list[int]] = {}
        next_id = 0
        ft = flat[t]
        for i, j in zip(i_idx[lo:hi].tolist(), j_idx[lo:hi].tolist()):
            ci, cj = owner.get(i, -1 - i), owner.get(j, -1 - j)
            if ci == cj:
                continue
            mi, mj = clusters.get(ci, [i]), clusters.get(cj, [j])
            cams_i = {m // P for m in mi}
            if any(m // P in cams_i for m in mj):
                continue
            cross = ft[np.ix_(mi, mj)]
            fin = cross[np.isfinite(cross)]
            if fin.size == 0 or fin.mean() >= threshold:
                continue
            if ci >= 0 or cj >= 0:
                new_id = ci if ci >= 0 else cj
            else:
                new_id, next_id = next_id, next_id + 1
            merged = mi + mj
            clusters.pop(ci, None)
            clusters.pop(cj, None)
            clusters[new_id] = merged
            for m in merged:
                owner[m] = new_id
        frames.append([members for members in clusters.values() if len(members) >= 2])
    K = max((len(f) for f in frames), default=0)
    out = np.full((T, max(K, 1), C), -1, dtype=np.int64)
    for t, clusters_t in enumerate(frames):
        for k, members in enumerate(clusters_t):
            for m in members:
                out[t, k, m // P] = m % P
    return out


def gather(values: np.ndarray, members: np.ndarray, fill: float) -> np.ndarray:
    """Pick each cluster's detection per camera.

    Args:
        values: (C, T, P, ...) per-detection arrays.
        members: (T, K, C) slot indices, -1 = none.
        fill: value where a cluster has no detection.

    Returns:
        (C, T, K, ...) gathered values.
    """
    idx = np.clip(members, 0, None).transpose(2, 0, 1)  # (C, T, K)
    extra = values.ndim - 3
    ix = idx.reshape(idx.shape + (1,) * extra)
    out = np.take_along_axis(values, ix, axis=2).astype(np.float64, copy=True)
    out[members.transpose(2, 0, 1) < 0] = fill
    return out


def _assign_min_cost(cost: np.ndarray, threshold: float) -> np.ndarray:
    """One-to-one cheapest-first assignment over the last two axes, batched.

    Args:
        cost: (..., K, P) costs; entries >= threshold are never assigned.

    Returns:
        (..., K) int: the column assigned to each row, -1 if none.
    """
    cost = np.where(np.isfinite(cost), cost, np.inf).copy()
    batch, (K, P) = cost.shape[:-2], cost.shape[-2:]
    flat = cost.reshape(-1, K, P)
    out = np.full(flat.shape[:2], -1, dtype=np.int64)
    rows_b = np.arange(flat.shape[0])
    for _ in range(min(K, P)):
        best = flat.reshape(flat.shape[0], -1).argmin(-1)
        k, p = np.divmod(best, P)
        val = flat[rows_b, k, p]
        ok = val < threshold
        out[rows_b[ok], k[ok]] = p[ok]
        flat[rows_b[ok], k[ok], :] = np.inf
        flat[rows_b[ok], :, p[ok]] = np.inf
        if not ok.any():
            break
    return out.reshape(batch + (K,))


def _cameras_in_view(rig: Rig, proj: np.ndarray) -> np.ndarray:
    """How many cameras see each person: proj (C, T, K, J, 2) px -> (T, K), counting a camera when at
    least half the person's projected joints fall inside its image."""
    size = np.array([cam.image_size for cam in rig.cameras], dtype=np.float64)[:, None, None, None, :]  # (C,1,1,1,2)
    with np.errstate(invalid="ignore"):
        inside = ((proj >= -0.5) & (proj <= size - 0.5)).all(-1)  # (C, T, K, J)
    finite = np.isfinite(proj).all(-1).sum(-1)
    return ((inside.sum(-1) * 2 >= finite) & (finite > 0)).sum(0)


def associate(rig: Rig, uv: np.ndarray, w: np.ndarray, options: AssociationOptions,
              robust: RobustOptions, show_progress: bool = False) -> np.ndarray:
    """Group detections across cameras into people, per frame.

    Args:
        rig: C cameras.
        uv: (C, T, P, J, 2) distorted pixels, NaN where missing.
        w: (C, T, P, J) weights, 0 where missing.
        options: association thresholds.
        robust: consensus-triangulation settings used for the reprojection check.

    Returns:
        members (T, K, C) int: detection slot per camera of each associated person, -1 = none.
        Every kept cluster has at least two cameras.
    """
    C, T, P, J = w.shape
    det_ok = (w > 0).sum(-1) >= options.min_joints
    xy = rig.undistort_points(uv.reshape(C, -1, 2)).reshape(uv.shape)
    cost = epipolar_costs(rig, xy, det_ok, options.min_common_joints)
    members = greedy_clusters(cost, options.epipolar_threshold_px, show_progress)
    quick = RobustOptions(threshold_px=robust.threshold_px, min_views=2, max_hypotheses=robust.max_hypotheses,
                          refine_iterations=1, swap_correction=False, seed=robust.seed)
    for _ in range(options.iterations):
        K = members.shape[1]
        uv_k = gather(uv, members, np.nan)  # (C, T, K, J, 2)
        w_k = gather(w, members, 0.0)
        flat_uv = uv_k.reshape(C, -1, 2)
        pts, _, _ = msac(rig, flat_uv, rig.undistort_points(flat_uv), w_k.reshape(C, -1), quick)
        pts = pts.reshape(T, K, J, 3)
        size = (members >= 0).sum(-1)
        # Suppress duplicates: a cluster close to a larger one is the same person.
        order = np.argsort(-size, axis=1, kind="stable")
        members = np.take_along_axis(members, order[..., None], axis=1)
        pts = np.take_along_axis(pts, order[..., None, None], axis=1)
        alive = np.isfinite(pts).all(-1).sum(-1) >= options.min_common_joints
        d = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1)  # (T, K, K, J)
        n = np.isfinite(d).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = np.where(n > 0, np.nansum(d, axis=-1) / n, np.inf)
        for k in range(K):
            for m in range(k + 1, K):
                alive[:, m] &= ~(alive[:, k] & (dist[:, k, m] < options.duplicate_distance_m))
        proj = rig.project(pts)  # (C, T, K, J, 2)
        with np.errstate(invalid="ignore"):
            d = np.linalg.norm(proj[:, :, :, None] - uv[:, :, None], axis=-1)  # (C, T, K, P, J)
        reproj = _median_with_min(d, options.min_common_joints)
        reproj[:, ~alive] = np.inf
        reproj[np.broadcast_to(~det_ok[:, :, None, :], reproj.shape)] = np.inf
        assign = _assign_min_cost(reproj, options.reprojection_threshold_px)  # (C, T, K)
        members = assign.transpose(1, 2, 0)
        members[(members >= 0).sum(-1) < 2] = -1
        if options.min_view_share > 0:
            expected = _cameras_in_view(rig, proj)  # (T, K)
            support = (members >= 0).sum(-1)
            members[support < options.min_view_share * expected] = -1
    keep = (members >= 0).any(axis=(0, 2))
    return members[:, keep] if keep.any() else members[:, :0]
