"""Solve a camera's intrinsics from board views, dropping outlier views iteratively.

Models (``model``):

- ``pinhole5``: ``cv2.calibrateCamera``, dist ``[k1, k2, p1, p2, k3]``.
- ``rational8``: ``cv2.calibrateCamera`` with ``CALIB_RATIONAL_MODEL``, dist
  ``[k1, k2, p1, p2, k3, k4, k5, k6]``.
- ``fisheye``: ``cv2.fisheye.calibrate`` (equidistant model), dist ``[k1, k2, k3, k4]``.

After each solve, first single corners are checked: a corner whose residual exceeds
``CORNER_OUTLIER`` x the median corner residual (a ChArUco corner interpolated from a misread
marker, a corner pulled by glare or an overlay) is dropped when its view has few such corners, and
the camera is solved again. Otherwise every view gets its RMS reprojection error; a view is an
outlier when its error exceeds ``max(median + outlier_k * 1.4826 * MAD, outlier_floor_px)``.
Outliers are dropped (worst first, never below ``min_frames`` views, at most a quarter of the
views per round) and the camera is solved again, until nothing is dropped or ``max_rounds`` is
reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

Model = Literal["pinhole5", "rational8", "fisheye"]
MODELS: tuple[str, ...] = ("pinhole5", "rational8", "fisheye")
DIST_LEN = {"pinhole5": 5, "rational8": 8, "fisheye": 4}
CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
# a single corner is an outlier above 5 x the median corner residual (about 6 sigma of Gaussian
# detection noise, so clean corners are never dropped) and above 0.1 px
CORNER_OUTLIER = 5.0
CORNER_FLOOR_PX = 0.1
CORNER_SHARE = 0.2
MIN_VIEW_POINTS = 6


@dataclass(frozen=True)
class Solution:
    """One solve over a set of views.

    Attributes:
        K: float64 ``(3, 3)`` camera matrix, px.
        dist: float64 ``(D,)`` distortion coefficients (D from the model).
        rvecs, tvecs: float64 ``(V, 3)`` board -> camera pose of each view (Rodrigues, metres).
        image_points: per view, float64 ``(M_v, 2)`` the observed px that were solved on.
        residuals: per view, float64 ``(M_v, 2)`` observed minus reprojected px.
        view_rms: float64 ``(V,)`` RMS reprojection error of each view, px.
        rms: RMS over every point of every view, px.
    """

    K: np.ndarray
    dist: np.ndarray
    rvecs: np.ndarray
    tvecs: np.ndarray
    image_points: list[np.ndarray]
    residuals: list[np.ndarray]
    view_rms: np.ndarray
    rms: float


@dataclass(frozen=True)
class IntrinsicsResult:
    """The final solve and the history of dropped views.

    Attributes:
        model: the distortion model.
        solution: the last solve, over the views in ``used``.
        used: int ``(U,)`` indices (into the views given) of the views in the final solve.
        outliers: view index -> its RMS error (px) in the solve where it was dropped.
        rounds: how many solves ran.
        corners_dropped: single corners removed as outliers (see :func:`calibrate`).
    """

    model: str
    solution: Solution
    used: np.ndarray
    outliers: dict[int, float] = field(default_factory=dict)
    rounds: int = 1
    corners_dropped: int = 0


def project(
    model: str, points_board: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, K: np.ndarray, dist: np.ndarray
) -> np.ndarray:
    """Board points ``(M, 3)`` m at pose (rvec, tvec) -> distorted pixels ``(M, 2)``."""
    pts = np.ascontiguousarray(points_board, np.float64).reshape(-1, 1, 3)
    if model == "fisheye":
        uv, _ = cv2.fisheye.projectPoints(
            pts, np.reshape(rvec, (1, 1, 3)), np.reshape(tvec, (1, 1, 3)), K, dist
        )
    else:
        uv, _ = cv2.projectPoints(pts, np.asarray(rvec, float), np.asarray(tvec, float), K, dist)
    return uv.reshape(-1, 2)


def undistort_normalized(model: str, uv: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Distorted pixels ``(M, 2)`` -> normalised image coordinates ``(M, 2)`` (x / z, y / z)."""
    pts = np.ascontiguousarray(uv, np.float64).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-14)
    if model == "fisheye":
        out = cv2.fisheye.undistortPoints(pts, K, dist, criteria=criteria)
    else:
        out = cv2.undistortPoints(pts, K, dist, criteria=criteria)
    return out.reshape(-1, 2)


def pixel_grid(image_size: tuple[int, int], step_px: int = 16, border_px: int = 4) -> np.ndarray:
    """Pixels every ``step_px``, ``border_px`` in from the edges: float64 ``(G, 2)``."""
    w, h = image_size
    u, v = np.meshgrid(
        np.arange(border_px, w - border_px + 1, step_px), np.arange(border_px, h - border_px + 1, step_px)
    )
    return np.stack([u.ravel(), v.ravel()], axis=1).astype(float)


def ray_error_px(
    model: str,
    K: np.ndarray,
    dist: np.ndarray,
    K_ref: np.ndarray,
    dist_ref: np.ndarray,
    image_size: tuple[int, int],
    ref_model: str | None = None,
    step_px: int = 16,
    border_px: int = 4,
    angular: bool = False,
    uv: np.ndarray | None = None,
) -> np.ndarray:
    """How far apart two calibrations put each pixel's viewing ray, in reference pixels.

    A grid of pixels (every ``step_px``, ``border_px`` in from the edges) is undistorted with both
    calibrations. By default the undistorted points (normalised coordinates times the reference
    focal lengths) are compared; with ``angular`` the angle between the two rays times the
    reference focal length is returned instead (for fisheye lenses, whose normalised coordinates
    grow without bound towards 90 degrees). ``uv`` ``(G, 2)`` px replaces the grid when given.
    Returns float64 ``(G,)`` px.
    """
    uv = pixel_grid(image_size, step_px, border_px) if uv is None else np.asarray(uv, float).reshape(-1, 2)
    a = undistort_normalized(model, uv, K, dist)
    b = undistort_normalized(ref_model or model, uv, K_ref, dist_ref)
    if angular:
        ra, rb = (np.column_stack([x, np.ones(len(x))]) for x in (a, b))
        cos = np.sum(ra * rb, axis=1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1))
        return np.arccos(np.clip(cos, -1.0, 1.0)) * 0.5 * (K_ref[0, 0] + K_ref[1, 1])
    return np.linalg.norm((a - b) * [K_ref[0, 0], K_ref[1, 1]], axis=1)


def _fisheye_flags() -> int:
    """RECOMPUTE_EXTRINSIC | FIX_SKEW: ``cv2.fisheye.*`` up to OpenCV 4, ``cv2.CALIB_*`` from OpenCV 5."""
    ns = cv2.fisheye if hasattr(cv2.fisheye, "CALIB_RECOMPUTE_EXTRINSIC") else cv2
    return ns.CALIB_RECOMPUTE_EXTRINSIC | ns.CALIB_FIX_SKEW


def undistortion_error_px(
    model: str,
    K: np.ndarray,
    dist: np.ndarray,
    K_ref: np.ndarray,
    dist_ref: np.ndarray,
    image_size: tuple[int, int],
    ref_model: str | None = None,
    step_px: int = 16,
    border_px: int = 4,
    uv: np.ndarray | None = None,
) -> np.ndarray:
    """How differently two calibrations undistort each pixel, in pixels.

    A grid of pixels (every ``step_px``, ``border_px`` in from the edges) is undistorted by each
    calibration into its own ideal pinhole image (``cv2.undistortPoints`` with ``P = K``) and the
    two results are compared. This measures the distortion model; unlike :func:`ray_error_px` it
    does not count a principal-point offset, which only turns every ray by the same small angle.
    ``uv`` ``(G, 2)`` px replaces the grid when given. Returns float64 ``(G,)`` px.
    """
    uv = pixel_grid(image_size, step_px, border_px) if uv is None else np.asarray(uv, float).reshape(-1, 2)
    a = undistort_normalized(model, uv, K, dist) * [K[0, 0], K[1, 1]] + K[:2, 2]
    b = (
        undistort_normalized(ref_model or model, uv, K_ref, dist_ref) * [K_ref[0, 0], K_ref[1, 1]]
        + K_ref[:2, 2]
    )
    return np.linalg.norm(a - b, axis=1)


def solve_once(
    model: str, obj: list[np.ndarray], img: list[np.ndarray], image_size: tuple[int, int]
) -> Solution:
    """One calibration over views ``obj[v]`` ``(M_v, 3)`` m and ``img[v]`` ``(M_v, 2)`` px."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if model == "fisheye":
        flags = _fisheye_flags()
        _, K, dist, rvecs, tvecs = cv2.fisheye.calibrate(
            [o.reshape(1, -1, 3).astype(np.float64) for o in obj],
            [p.reshape(1, -1, 2).astype(np.float64) for p in img],
            tuple(image_size),
            np.zeros((3, 3)),
            np.zeros(4),
            flags=flags,
            criteria=CRITERIA,
        )
    else:
        flags = cv2.CALIB_RATIONAL_MODEL if model == "rational8" else 0
        _, K, dist, rvecs, tvecs = cv2.calibrateCamera(
            [o.astype(np.float32) for o in obj],
            [p.astype(np.float32) for p in img],
            tuple(image_size),
            None,
            None,
            flags=flags,
            criteria=CRITERIA,
        )
    dist = np.asarray(dist, np.float64).ravel()[: DIST_LEN[model]]
    rvecs = np.asarray(rvecs, np.float64).reshape(-1, 3)
    tvecs = np.asarray(tvecs, np.float64).reshape(-1, 3)
    residuals = [
        p.astype(np.float64) - project(model, o, r, t, K, dist) for o, p, r, t in zip(obj, img, rvecs, tvecs)
    ]
    view_rms = np.array([np.sqrt(np.mean(np.sum(r**2, axis=1))) for r in residuals])
    all_sq = np.concatenate([np.sum(r**2, axis=1) for r in residuals])
    return Solution(
        np.asarray(K, np.float64),
        dist,
        rvecs,
        tvecs,
        [p.astype(np.float64) for p in img],
        residuals,
        view_rms,
        float(np.sqrt(all_sq.mean())),
    )


def outlier_threshold(view_rms: np.ndarray, outlier_k: float, floor_px: float) -> float:
    """``max(median + k * 1.4826 * MAD, floor_px)`` of the per-view errors, px."""
    med = float(np.median(view_rms))
    mad = float(np.median(np.abs(view_rms - med)))
    return max(med + outlier_k * 1.4826 * mad, floor_px)


def calibrate(
    obj: list[np.ndarray],
    img: list[np.ndarray],
    image_size: tuple[int, int],
    model: str = "pinhole5",
    outlier_k: float = 3.0,
    outlier_floor_px: float = 0.5,
    min_frames: int = 8,
    max_rounds: int = 8,
) -> IntrinsicsResult:
    """Solve, drop outlier views, re-solve (see the module docstring).

    Args:
        obj: per view, float ``(M_v, 3)`` board points, metres (z = 0).
        img: per view, float ``(M_v, 2)`` detected distorted pixels.
        image_size: ``(width, height)`` px.
        model: ``pinhole5`` | ``rational8`` | ``fisheye``.
        outlier_k, outlier_floor_px: the outlier rule.
        min_frames: never drop views below this count.
        max_rounds: most solves.
    """
    if len(obj) != len(img) or not obj:
        raise ValueError(f"need matching, non-empty view lists; got {len(obj)} and {len(img)}")
    obj, img = list(obj), list(img)
    used = np.arange(len(obj))
    outliers: dict[int, float] = {}
    rounds = corners_dropped = 0
    while True:
        rounds += 1
        sol = solve_once(model, [obj[i] for i in used], [img[i] for i in used], image_size)
        if rounds >= max_rounds:
            break
        dropped = _drop_outlier_corners(sol, used, obj, img)
        if dropped:
            corners_dropped += dropped
            continue
        thr = outlier_threshold(sol.view_rms, outlier_k, outlier_floor_px)
        order = np.argsort(-sol.view_rms)
        budget = min(len(used) - min_frames, max(1, len(used) // 4))
        drop = [k for k in order[: max(budget, 0)] if sol.view_rms[k] > thr]
        if not drop:
            break
        for k in drop:
            outliers[int(used[k])] = float(sol.view_rms[k])
        used = np.delete(used, drop)
    return IntrinsicsResult(model, sol, used, outliers, rounds, corners_dropped)


def _drop_outlier_corners(
    sol: Solution, used: np.ndarray, obj: list[np.ndarray], img: list[np.ndarray]
) -> int:
    """Remove, in place, the corners whose residual exceeds ``CORNER_OUTLIER`` x the median residual.

    A few bad corners drag their view's fitted pose, which spreads their error over the whole view;
    so in a view with any large residual the pose is fitted again robustly (RANSAC on the
    undistorted corners, with the current intrinsics) and the residuals are taken from that pose.
    Only views where bad corners are few (at most ``CORNER_SHARE`` of the view, and at least
    ``MIN_VIEW_POINTS`` left) lose them; a view with many is judged whole by the view rule.
    Returns how many corners were removed.
    """
    norms = [np.linalg.norm(r, axis=1) for r in sol.residuals]
    thr = max(CORNER_OUTLIER * float(np.median(np.concatenate(norms))), CORNER_FLOOR_PX)
    f = 0.5 * (sol.K[0, 0] + sol.K[1, 1])
    removed = 0
    for k, i in enumerate(used):
        if norms[k].max() <= thr or len(obj[i]) < MIN_VIEW_POINTS:
            continue
        model = "fisheye" if sol.dist.size == 4 else "pinhole"
        normalized = undistort_normalized(model, img[i], sol.K, sol.dist)
        ok, rvec, tvec, _ = cv2.solvePnPRansac(
            obj[i].astype(np.float64),
            normalized,
            np.eye(3),
            None,
            reprojectionError=thr / f,
            iterationsCount=200,
            confidence=0.999,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not ok:
            continue
        residual = np.linalg.norm(img[i] - project(model, obj[i], rvec, tvec, sol.K, sol.dist), axis=1)
        keep = residual <= thr
        bad = int((~keep).sum())
        if 0 < bad <= max(1, CORNER_SHARE * keep.size) and keep.sum() >= MIN_VIEW_POINTS:
            obj[i], img[i] = obj[i][keep], img[i][keep]
            removed += bad
    return removed
