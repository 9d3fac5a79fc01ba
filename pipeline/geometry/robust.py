"""Robust triangulation: left/right swap correction and per-point outlier-view rejection.

Outlier views are rejected by consensus over view subsets (MSAC, a RANSAC that scores each
hypothesis by its truncated squared reprojection error). Every hypothesis is a two-view
triangulation computed for all points at once; each point draws its own pairs among the views
that see it (all of them when it has few views), and stops drawing once its consensus is
confident, so the cost grows linearly with the number of cameras instead of combinatorially
(Pose2Sim's exhaustive subset search stalls at 10–16 cameras). The best hypothesis' inliers are
then refined by weighted DLT and re-thresholded (the "local optimisation" step of LO-RANSAC).

Left/right swaps (the commonest 2D error) are corrected before that final pass: each view's
left and right joints of every flip pair are compared with the projections of the consensus 3D
joints; where the swapped labelling agrees (every joint of the pair within the threshold) and the
original does not (one joint beyond it), and the swapped error is under half the original, that
view's pair is swapped.

All arrays carry the camera axis first, in rig order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.geometry.camera import MIN_DEPTH_M
from pipeline.geometry.rig import Rig
from pipeline.geometry.triangulate import dlt_basis, triangulate_normalized


@dataclass(frozen=True)
class RobustOptions:
    """Settings of :func:`robust_triangulate`.

    Attributes:
        threshold_px: a view whose reprojection error exceeds this is an outlier, pixels.
        min_views: points with fewer inlier views are NaN (>= 2).
        max_hypotheses: most view pairs tried per point (all its pairs when it has fewer).
        confidence: a point stops drawing pairs once a clean pair would have been drawn with
            this probability, given its best inlier ratio so far.
        refine_iterations: DLT-and-rethreshold passes after the best hypothesis.
        swap_correction: detect and correct left/right swaps per view (needs flip pairs).
        seed: random seed for the sampled pairs.
    """

    threshold_px: float = 15.0
    min_views: int = 2
    max_hypotheses: int = 24
    confidence: float = 0.999
    refine_iterations: int = 1
    swap_correction: bool = True
    seed: int = 0


@dataclass(frozen=True)
class RobustResult:
    """Output of the robust path. Batch shape ``B`` is the input's, ``C`` the cameras.

    Attributes:
        points: (*B, 3) world points, metres; NaN where fewer than ``min_views`` inliers.
        inliers: (C, *B) bool, the views used for each point.
        views_used: (*B,) int, number of inlier views (0 where NaN).
        reprojection_error_px: (*B,) mean reprojection error over the inlier views; NaN where NaN.
        uv_px: (C, *B, 2) the observations after swap correction.
        weights: (C, *B) their weights after swap correction (0 where missing).
        swapped: (C, *B[:-1], n_pairs) bool, which flip pairs were swapped (all False if none).
    """

    points: np.ndarray
    inliers: np.ndarray
    views_used: np.ndarray
    reprojection_error_px: np.ndarray
    uv_px: np.ndarray
    weights: np.ndarray
    swapped: np.ndarray


def _errors_px(rig: Rig, pts: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, 3) points, (C, N, 2) observations -> (C, N) pixel errors (NaN when unknown)."""
    return np.linalg.norm(rig.project(pts) - uv, axis=-1)


def _errors_normalized(rig: Rig, pts: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Approximate pixel errors measured in undistorted space: ``f_c * |x_obs - x_proj|``, (C, N).

    Skips the distortion model (the local scale differs from the true pixel error by the lens'
    radial factor, a few per cent), which makes scoring many hypotheses cheap. Points behind a
    camera give inf.
    """
    pc = pts @ rig.R.transpose(0, 2, 1) + rig.t[:, None, :]  # (C, N, 3)
    z = pc[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(z > MIN_DEPTH_M, 1.0 / z, np.nan)
        dx = pc[..., 0] * inv - xy[..., 0]
        dy = pc[..., 1] * inv - xy[..., 1]
    err = np.sqrt(dx * dx + dy * dy) * rig.focal_px[:, None]
    return np.where(np.isnan(inv), np.inf, err)


def _pair_order(n: int) -> list[tuple[int, int]]:
    """Pairs of positions ordered by their larger member: (0,1), (0,2), (1,2), (0,3), ..."""
    return [(a, b) for b in range(1, n) for a in range(b)]


def _midpoint(o1: np.ndarray, d1: np.ndarray, o2: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Midpoint of the shortest segment between rays ``o + s d``; (N, 3) each -> (N, 3), NaN if parallel."""
    w0 = o1 - o2
    a = (d1 * d1).sum(-1)
    b = (d1 * d2).sum(-1)
    c = (d2 * d2).sum(-1)
    d = (d1 * w0).sum(-1)
    e = (d2 * w0).sum(-1)
    den = a * c - b * b
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = den > 1e-12 * a * c
        s = np.where(ok, (b * e - c * d) / den, np.nan)
        t = np.where(ok, (a * e - b * d) / den, np.nan)
    return 0.5 * (o1 + s[:, None] * d1 + o2 + t[:, None] * d2)


def msac(rig: Rig, uv: np.ndarray, xy: np.ndarray, w: np.ndarray, options: RobustOptions,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consensus triangulation of flat batches.

    Each point's views are put in a random order once; hypothesis ``h`` is, for every point at
    once, the midpoint of the rays of the h-th pair of that order (pairs ordered by their later
    member, so a point with n views has tried all its pairs after n(n-1)/2 hypotheses and no pair
    twice). Hypotheses are scored by the truncated squared error (MSAC) measured in undistorted
    space. A point stops drawing once the best inlier ratio ε makes another clean pair unlikely
    to be missed (``h >= log(1 - confidence) / log(1 - ε²)``), so clean points cost one or two
    hypotheses. The best hypothesis' inliers are then refined by weighted DLT with pixel errors.

    Args:
        rig: C cameras.
        uv: (C, N, 2) distorted pixels; xy: (C, N, 2) the same undistorted and normalized.
        w: (C, N) weights, 0 where not observed.

    Returns:
        points (N, 3), inliers (C, N) bool, errors (C, N) pixel errors of the final points.
    """
    C, N = w.shape
    P, focal = rig.projections, rig.focal_px
    basis = dlt_basis(P)
    valid = w > 0
    n_valid = valid.sum(0)
    thr = float(options.threshold_px)
    xy0 = np.where(valid[..., None], xy, 0.0)
    rng = np.random.default_rng(options.seed)
    perm = np.argsort(np.where(valid, rng.random((C, N)), np.inf), axis=0)  # valid views first
    R32, t32 = rig.R.transpose(0, 2, 1).astype(np.float32), rig.t[:, None, :].astype(np.float32)
    f32 = rig.focal_px[:, None].astype(np.float32)
    centers = rig.centers
    log_fail = np.log(1.0 - options.confidence)
    best_cost = np.full(N, np.inf, dtype=np.float32)
    best_pts = np.full((N, 3), np.nan)
    # Working set of still-active points, compacted as points retire.
    idx = np.flatnonzero(n_valid >= 2)
    xy_l, val_l, perm_l = xy0[:, idx].astype(np.float32), valid[:, idx], perm[:, idx]
    best_inl_l = np.zeros(idx.size, dtype=np.int64)
    for h, (a, b) in enumerate(_pair_order(C)[: options.max_hypotheses]):
        if idx.size == 0:
            break
        n = idx.size
        ia, ib = perm_l[a], perm_l[b]
        xa, xb = xy0[ia, idx], xy0[ib, idx]
        da = np.einsum("nji,nj->ni", rig.R[ia], np.concatenate([xa, np.ones((n, 1))], -1))
        db = np.einsum("nji,nj->ni", rig.R[ib], np.concatenate([xb, np.ones((n, 1))], -1))
        pts = _midpoint(centers[ia], da, centers[ib], db)
        pc = pts.astype(np.float32) @ R32 + t32  # (C, n, 3)
        z = pc[..., 2]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            inv = np.float32(1.0) / z
            dx = pc[..., 0] * inv - xy_l[..., 0]
            dy = pc[..., 1] * inv - xy_l[..., 1]
            err = np.sqrt(dx * dx + dy * dy) * f32
        err[~(z > MIN_DEPTH_M) | np.isnan(err)] = thr
        n_inl = ((err < thr) & val_l).sum(0)
        np.minimum(err, thr, out=err)
        err *= err
        err[~val_l] = 0.0
        cost = err.sum(0)
        ok = (b < n_valid[idx]) & np.isfinite(pts[:, 0])
        cost[~ok] = np.inf
        better = cost < best_cost[idx]
        best_cost[idx[better]] = cost[better]
        best_pts[idx[better]] = pts[better]
        best_inl_l = np.where(better, n_inl, best_inl_l)
        eps2 = (best_inl_l / np.maximum(n_valid[idx], 1)) ** 2
        with np.errstate(divide="ignore"):
            needed = np.where(eps2 >= 1.0, 1.0, log_fail / np.log1p(-np.minimum(eps2, 1.0 - 1e-12)))
        exhausted = (b + 1 >= n_valid[idx]) if a == b - 1 else (b >= n_valid[idx])
        done = (h + 1 >= needed) | exhausted
        keep = ~done
        if keep.sum() < 0.75 * n:
            idx, xy_l, val_l, perm_l = idx[keep], xy_l[:, keep], val_l[:, keep], perm_l[:, keep]
            best_inl_l = best_inl_l[keep]
    # Local optimisation: inliers of the best hypothesis -> weighted DLT -> re-threshold.
    inl = valid & (_errors_normalized(rig, best_pts, xy0) < thr)
    inl[:, inl.sum(0) < 2] = False
    for _ in range(max(0, options.refine_iterations)):
        cand = triangulate_normalized(xy0, np.where(inl, w, 0.0), P, focal, reweight=1, basis=basis)
        new_inl = valid & (_errors_px(rig, cand, uv) < thr)
        grow = np.isfinite(cand[:, 0]) & (new_inl.sum(0) >= 2)
        inl = np.where(grow[None], new_inl, inl)
    pts = triangulate_normalized(xy0, np.where(inl, w, 0.0), P, focal, reweight=1, basis=basis)
    err = _errors_px(rig, pts, uv)
    inl &= np.isfinite(pts[:, 0])[None]
    return pts, inl, err


def correct_swaps(rig: Rig, uv: np.ndarray, w: np.ndarray, reference: np.ndarray,
                  flip_pairs: Sequence[tuple[int, int]], threshold_px: float,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Swap each view's left/right joints where the swapped labelling fits the 3D consensus.

    Args:
        uv: (C, M, J, 2) observations; w: (C, M, J) weights (0 = missing).
        reference: (M, J, 3) consensus joints (NaN allowed).
        flip_pairs: (left, right) joint index pairs.
        threshold_px: inlier threshold.

    Returns:
        uv (C, M, J, 2), w (C, M, J) corrected copies, swapped (C, M, n_pairs) bool.
    """
    pairs = np.asarray(flip_pairs, dtype=int).reshape(-1, 2)
    L, R = pairs[:, 0], pairs[:, 1]
    hat = rig.project(reference)  # (C, M, J, 2)
    seen = w > 0

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(uv[:, :, a] - hat[:, :, b], axis=-1)

    with np.errstate(invalid="ignore"):
        e_ll, e_rr, e_lr, e_rl = dist(L, L), dist(R, R), dist(L, R), dist(R, L)
        s_l, s_r = seen[:, :, L], seen[:, :, R]
        ref_ok = np.isfinite(hat[:, :, L]).all(-1) & np.isfinite(hat[:, :, R]).all(-1)
        keep = np.where(s_l, e_ll, 0.0) + np.where(s_r, e_rr, 0.0)
        swap = np.where(s_l, e_lr, 0.0) + np.where(s_r, e_rl, 0.0)
        swap_fits = (~s_l | (e_lr < threshold_px)) & (~s_r | (e_rl < threshold_px))
        keep_bad = (s_l & (e_ll > threshold_px)) | (s_r & (e_rr > threshold_px))
        swapped = ref_ok & keep_bad & swap_fits & (swap < 0.5 * keep)
    c_idx, m_idx, k_idx = np.nonzero(swapped)
    perm_full = np.broadcast_to(np.arange(uv.shape[2]), uv.shape[:3]).copy()
    perm_full[c_idx, m_idx, L[k_idx]] = R[k_idx]
    perm_full[c_idx, m_idx, R[k_idx]] = L[k_idx]
    uv_out = np.take_along_axis(uv, perm_full[..., None], axis=2)
    w_out = np.take_along_axis(w, perm_full, axis=2)
    return uv_out, w_out, swapped


def robust_triangulate(rig: Rig, uv_px: np.ndarray, weights: np.ndarray | None = None,
                       options: RobustOptions | None = None,
                       flip_pairs: Sequence[tuple[int, int]] | None = None) -> RobustResult:
    """Swap-corrected, outlier-rejecting triangulation of every point at once.

    Args:
        rig: C cameras.
        uv_px: (C, *B, 2) distorted pixels; NaN = missing. With ``flip_pairs``, the last batch
            axis is the joint axis J and pairs index it.
        weights: (C, *B) confidences (0 or NaN = missing); None = all 1.
        options: thresholds and sampling (defaults if None).
        flip_pairs: left/right joint pairs for swap correction; None or empty = no correction.

    Returns:
        :class:`RobustResult`.
    """
    options = options or RobustOptions()
    if options.min_views < 2:
        raise ValueError(f"min_views must be >= 2; got {options.min_views}")
    uv_px = np.asarray(uv_px, dtype=np.float64)
    C = len(rig)
    if uv_px.ndim < 2 or uv_px.shape[0] != C or uv_px.shape[-1] != 2:
        raise ValueError(f"uv_px must have shape ({C}, ..., 2); got {uv_px.shape}")
    batch = uv_px.shape[1:-1]
    w = np.ones(uv_px.shape[:-1]) if weights is None else np.nan_to_num(np.asarray(weights, np.float64))
    if w.shape != uv_px.shape[:-1]:
        raise ValueError(f"weights must have shape {uv_px.shape[:-1]}; got {w.shape}")
    w = np.where(np.isfinite(uv_px).all(-1) & (w > 0), w, 0.0)
    uv = np.where(w[..., None] > 0, uv_px, np.nan).reshape(C, -1, 2)
    wf = w.reshape(C, -1)
    xy = rig.undistort_points(uv)
    pts, inl, err = msac(rig, uv, xy, wf, options)
    use_swaps = options.swap_correction and flip_pairs is not None and len(flip_pairs) > 0 and len(batch) >= 1
    n_pairs = len(flip_pairs) if use_swaps else 0
    swapped = np.zeros((C,) + batch[:-1] + (n_pairs,), bool)
    if use_swaps:
        J = batch[-1]
        uv4 = uv.reshape(C, -1, J, 2)
        w3 = wf.reshape(C, -1, J)
        uv_s, w_s, sw = correct_swaps(rig, uv4, w3, pts.reshape(-1, J, 3), flip_pairs, options.threshold_px)
        rows = np.flatnonzero(sw.any(axis=(0, 2)))
        if rows.size:
            sub_uv = uv_s[:, rows].reshape(C, -1, 2)
            sub_w = w_s[:, rows].reshape(C, -1)
            sub_pts, sub_inl, sub_err = msac(rig, sub_uv, rig.undistort_points(sub_uv), sub_w, options)
            flat = (rows[:, None] * J + np.arange(J)).reshape(-1)
            pts[flat], inl[:, flat], err[:, flat] = sub_pts, sub_inl, sub_err
            uv = uv_s.reshape(C, -1, 2)
            wf = w_s.reshape(C, -1)
        swapped = sw.reshape((C,) + batch[:-1] + (n_pairs,))
    n_used = inl.sum(0)
    bad = n_used < options.min_views
    pts[bad] = np.nan
    inl[:, bad] = False
    n_used[bad] = 0
    with np.errstate(invalid="ignore"):
        mean_err = np.where(inl, err, 0.0).sum(0) / np.where(bad, np.nan, n_used)
    return RobustResult(
        points=pts.reshape(batch + (3,)),
        inliers=inl.reshape((C,) + batch),
        views_used=n_used.reshape(batch),
        reprojection_error_px=mean_err.reshape(batch),
        uv_px=uv.reshape((C,) + batch + (2,)),
        weights=wf.reshape((C,) + batch),
        swapped=swapped,
    )
