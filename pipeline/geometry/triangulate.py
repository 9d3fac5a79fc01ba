"""Confidence-weighted linear (DLT) triangulation, batched over any number of points.

For camera ``c`` with normalized projection ``P = [R | t]`` (rows ``P1, P2, P3``) and an
undistorted normalized observation ``(x, y)``, a world point ``X`` (homogeneous ``[X; 1]``)
satisfies ``(x P3 - P1) X = 0`` and ``(y P3 - P2) X = 0``. With per-view weights ``w`` the
least-squares solution minimises ``sum_c w_c² (|a1_c X|² + |a2_c X|²)``; its normal matrix is

    M = sum_c w_c² [ (x² + y²) P3 P3ᵀ - x (P3 P1ᵀ + P1 P3ᵀ) - y (P3 P2ᵀ + P2 P3ᵀ) + P1 P1ᵀ + P2 P2ᵀ ]

which is linear in the four per-view coefficients ``w² (x² + y²), w² x, w² y, w²``. So ``M`` for
every point is one matrix product ``(N, 4C) @ (4C, 16)`` against a per-rig basis, and the 3×3
system ``M[:3, :3] X = -M[:3, 3]`` is solved in closed form. No loop runs per point.

The algebraic residual ``a1 X`` of view ``c`` equals ``depth_c × (normalized error)``; weighting by
``f_c / depth_c`` (one reweighting pass, depth from the first solution) turns the objective into
the sum of squared pixel errors to first order.

NaN means "not observed": a view with NaN coordinates or a weight <= 0 is left out; a point
seen by fewer than ``min_views`` views is NaN.
"""

from __future__ import annotations

import numpy as np

from pipeline.geometry.rig import Rig


def dlt_basis(projections: np.ndarray) -> np.ndarray:
    """Per-camera basis of the DLT normal matrix.

    Args:
        projections: (C, 3, 4) normalized projections ``[R | t]``.

    Returns:
        (C * 4, 16): row ``4c + k`` is the flattened 4×4 matrix multiplying coefficient ``k``
        (``w²(x²+y²)``, ``w² x``, ``w² y``, ``w²``) of camera ``c``.
    """
    P = np.asarray(projections, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (3, 4):
        raise ValueError(f"projections must have shape (C, 3, 4); got {P.shape}")
    p1, p2, p3 = P[:, 0], P[:, 1], P[:, 2]

    def outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a[:, :, None] * b[:, None, :]

    basis = np.stack(
        [
            outer(p3, p3),
            -(outer(p3, p1) + outer(p1, p3)),
            -(outer(p3, p2) + outer(p2, p3)),
            outer(p1, p1) + outer(p2, p2),
        ],
        axis=1,
    )  # (C, 4, 4, 4)
    return basis.reshape(P.shape[0] * 4, 16)


def _solve_sym3(m: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form solve of symmetric 3×3 systems. m (N, 3, 3), b (N, 3) -> x (N, 3), det (N,)."""
    a, bb, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e = m[:, 1, 1], m[:, 1, 2]
    f = m[:, 2, 2]
    c00 = d * f - e * e
    c01 = c * e - bb * f
    c02 = bb * e - c * d
    c11 = a * f - c * c
    c12 = bb * c - a * e
    c22 = a * d - bb * bb
    det = a * c00 + bb * c01 + c * c02
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        x0 = (c00 * b[:, 0] + c01 * b[:, 1] + c02 * b[:, 2]) * inv
        x1 = (c01 * b[:, 0] + c11 * b[:, 1] + c12 * b[:, 2]) * inv
        x2 = (c02 * b[:, 0] + c12 * b[:, 1] + c22 * b[:, 2]) * inv
    return np.stack([x0, x1, x2], axis=-1), det


def dlt_coefficients(xy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-view coefficients of the normal matrix, point-major.

    Args:
        xy: (C, N, 2) finite normalized coordinates (anything where ``w`` is 0).
        w: (C, N) weights >= 0.

    Returns:
        (N, C, 4) ``[w²(x²+y²), w² x, w² y, w²]``; reshape to (N, 4C) and multiply by
        :func:`dlt_basis` to get the flattened 4×4 normal matrices.
    """
    w2 = (w * w).T
    x, y = xy[..., 0].T, xy[..., 1].T
    return np.stack([w2 * (x * x + y * y), w2 * x, w2 * y, w2], axis=-1)


def solve_normal(coef: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Solve the DLT normal equations. coef (N, 4K), basis (4K, 16) -> (N, 3), NaN if degenerate."""
    n = coef.shape[0]
    m = (coef @ basis).reshape(n, 4, 4)
    pts, det = _solve_sym3(m[:, :3, :3], -m[:, :3, 3])
    # Relative conditioning: det is scale**3 for a well-posed point, ~0 for parallel rays.
    scale = np.trace(m[:, :3, :3], axis1=1, axis2=2) / 3.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.abs(det) > 1e-12 * scale**3
    pts[~ok] = np.nan
    return pts


def _solve_weighted(xy: np.ndarray, w: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """One weighted DLT solve. xy (C, N, 2) finite, w (C, N) >= 0 -> (N, 3), NaN if degenerate."""
    return solve_normal(dlt_coefficients(xy, w).reshape(xy.shape[1], -1), basis)


def triangulate_normalized(
    xy_norm: np.ndarray,
    weights: np.ndarray,
    projections: np.ndarray,
    focal_px: np.ndarray | None = None,
    *,
    min_views: int = 2,
    reweight: int = 1,
    basis: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted DLT from undistorted normalized observations.

    Args:
        xy_norm: (C, N, 2) undistorted normalized coordinates; NaN = not observed.
        weights: (C, N) confidences >= 0 (0 = not used); NaN counts as 0.
        projections: (C, 3, 4) normalized projections ``[R | t]``.
        focal_px: (C,) focal lengths, so residuals are in pixels; None = all equal.
        min_views: a point needs at least this many used views (>= 2), else NaN.
        reweight: passes that reweight each view by ``f / depth`` from the previous solution.
        basis: :func:`dlt_basis` of ``projections`` (computed if None).

    Returns:
        (N, 3) world points, metres; NaN where too few views or degenerate geometry.
    """
    xy_norm = np.asarray(xy_norm, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if xy_norm.ndim != 3 or xy_norm.shape[-1] != 2:
        raise ValueError(f"xy_norm must have shape (C, N, 2); got {xy_norm.shape}")
    if weights.shape != xy_norm.shape[:2]:
        raise ValueError(f"weights must have shape {xy_norm.shape[:2]}; got {weights.shape}")
    if min_views < 2:
        raise ValueError(f"min_views must be >= 2; got {min_views}")
    P = np.asarray(projections, dtype=np.float64)
    basis = dlt_basis(P) if basis is None else basis
    used = np.isfinite(xy_norm).all(-1) & (np.nan_to_num(weights) > 0)
    w = np.where(used, weights, 0.0)
    if focal_px is not None:
        w = w * np.asarray(focal_px, dtype=np.float64)[:, None]
    xy = np.where(used[..., None], xy_norm, 0.0)
    pts = _solve_weighted(xy, w, basis)
    for _ in range(reweight):
        depth = np.einsum("cj,nj->cn", P[:, 2, :3], pts) + P[:, 2, 3][:, None]  # (C, N)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(depth > 1e-3, 1.0 / depth, 0.0)
        w_new = w * np.nan_to_num(scale)
        good = np.isfinite(pts).all(-1)
        refined = _solve_weighted(xy, np.where(good[None], w_new, w), basis)
        pts = np.where(np.isfinite(refined), refined, pts)
    pts[used.sum(0) < min_views] = np.nan
    return pts


def triangulate(
    rig: Rig,
    uv_px: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    min_views: int = 2,
    reweight: int = 1,
) -> np.ndarray:
    """Triangulate distorted pixel observations from every camera of ``rig``.

    Args:
        rig: the calibrated rig (C cameras).
        uv_px: (C, ..., 2) distorted pixels, camera axis first in rig order; NaN = missing.
        weights: (C, ...) confidences (e.g. 2D scores); None = all 1.
        min_views: minimum number of used views (>= 2).
        reweight: reweighting passes (see module doc).

    Returns:
        (..., 3) world points in metres, NaN where fewer than ``min_views`` views.
    """
    uv_px = np.asarray(uv_px, dtype=np.float64)
    if uv_px.ndim < 2 or uv_px.shape[0] != len(rig) or uv_px.shape[-1] != 2:
        raise ValueError(f"uv_px must have shape ({len(rig)}, ..., 2); got {uv_px.shape}")
    batch = uv_px.shape[1:-1]
    if weights is None:
        weights = np.ones(uv_px.shape[:-1])
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != uv_px.shape[:-1]:
        raise ValueError(f"weights must have shape {uv_px.shape[:-1]}; got {weights.shape}")
    xy = rig.undistort_points(uv_px).reshape(len(rig), -1, 2)
    pts = triangulate_normalized(xy, weights.reshape(len(rig), -1), rig.projections, rig.focal_px,
                                 min_views=min_views, reweight=reweight)
    return pts.reshape(batch + (3,))


def reprojection_errors(rig: Rig, points_world: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    """Pixel distance between each observation and the projection of its 3D point.

    Args:
        rig: C cameras.
        points_world: (..., 3) metres.
        uv_px: (C, ..., 2) observed distorted pixels.

    Returns:
        (C, ...) errors in pixels; NaN where the point or the observation is missing.
    """
    proj = rig.project(points_world)
    if proj.shape != np.shape(uv_px):
        raise ValueError(f"uv_px must have shape {proj.shape}; got {np.shape(uv_px)}")
    return np.linalg.norm(proj - uv_px, axis=-1)
