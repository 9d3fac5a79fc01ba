"""Frame selection: reject blurred or thin detections, then choose a subset that covers the image.

A long sweep has thousands of near-identical frames; calibrateCamera's cost grows with the cube of
the number of views, and redundant views add nothing. The selection keeps at most ``max_frames``:

1. A frame is ``blurred`` when its sharpness (scale-normalised Laplacian variance inside the board,
   see :mod:`pipeline.calibration.detect`) is below ``blur_min_relative`` x the camera's median.
2. A frame is ``too_few_corners`` when fewer than ``min_corners`` corners were seen (ChArUco).
3. Greedy choice: each step takes the frame with the largest gain

       gain = (sum over the image cells it covers of 1 / (1 + times covered)
               + lam / (1 + times its tilt bin was chosen)) * novelty

   where cells form an 8-column grid over the image, tilt bins split the board normal's angle to
   the optical axis (0-15, 15-30, 30-45, > 45 degrees) and its direction (4 quadrants), ``lam`` is
   the median number of cells a frame covers, and ``novelty = min(1, d / 0.15)`` with ``d`` the
   distance, in (centre x / w, centre y / h, log2 board size, tilt x, tilt y), to the nearest frame
   already chosen, so near-duplicates of chosen frames are passed over. Frames not chosen are
   ``redundant``.

Tilts come from a rough pose per frame: a pinhole camera from ``cv2.initCameraMatrix2D`` over the
detections, then ``cv2.solvePnP`` (IPPE), distortion ignored; good enough to bin tilts.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration.board import BoardConfig, object_points
from pipeline.calibration.detect import Detections

GRID_COLS = 8
TILT_EDGES_DEG = (15.0, 30.0, 45.0)
NOVELTY_SCALE = 0.15


@dataclass(frozen=True)
class Selection:
    """Which detections go to the solver.

    Attributes:
        selected: int ``(S,)`` indices into the detections, in the order they were chosen.
        reason: one per detection: ``selected``, ``blurred``, ``too_few_corners`` or ``redundant``.
        tilt_deg: float ``(F,)`` rough angle between the board normal and the optical axis.
    """

    selected: np.ndarray
    reason: list[str]
    tilt_deg: np.ndarray


def grid_shape(image_size: tuple[int, int]) -> tuple[int, int]:
    """(cols, rows) of the coverage grid: 8 columns, square-ish cells."""
    w, h = image_size
    return GRID_COLS, max(2, int(round(GRID_COLS * h / w)))


def cell_ids(uv: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Coverage-grid cell id of each point ``(..., 2)`` px (-1 for NaN or outside the image)."""
    w, h = image_size
    gc, gr = grid_shape(image_size)
    with np.errstate(invalid="ignore"):
        cx = np.floor((uv[..., 0] + 0.5) / w * gc)
        cy = np.floor((uv[..., 1] + 0.5) / h * gr)
    ok = np.isfinite(cx) & np.isfinite(cy) & (cx >= 0) & (cx < gc) & (cy >= 0) & (cy < gr)
    return np.where(ok, np.nan_to_num(cy) * gc + np.nan_to_num(cx), -1).astype(np.int64)


def coverage_score(corners: np.ndarray, image_size: tuple[int, int]) -> float:
    """Fraction of coverage-grid cells holding at least one corner; ``corners`` ``(..., 2)`` px."""
    gc, gr = grid_shape(image_size)
    ids = cell_ids(np.asarray(corners, float).reshape(-1, 2), image_size)
    return float(np.unique(ids[ids >= 0]).size / (gc * gr))


def rough_tilts(corners: np.ndarray, board: BoardConfig, image_size: tuple[int, int]) -> np.ndarray:
    """Board normals ``(F, 3)`` in camera coordinates (unit, z > 0) from a rough pinhole pose.

    ``corners`` is ``(F, N, 2)`` px with NaN for unseen corners. Frames with fewer than 4
    corners get a NaN normal.
    """
    obj = object_points(board)
    F = corners.shape[0]
    normals = np.full((F, 3), np.nan)
    seen = np.isfinite(corners).all(axis=2)
    usable = np.flatnonzero(seen.sum(axis=1) >= 4)
    if usable.size == 0:
        return normals
    pick = usable[np.linspace(0, usable.size - 1, min(usable.size, 150)).astype(int)]
    try:
        K = cv2.initCameraMatrix2D(
            [obj[seen[i]] for i in pick], [corners[i][seen[i]].astype(np.float32) for i in pick], image_size
        )
    except cv2.error:
        K = None
    if K is None or not np.isfinite(K).all() or K[0, 0] <= 0:
        w, h = image_size
        K = np.array([[max(w, h), 0, w / 2], [0, max(w, h), h / 2], [0, 0, 1]], float)
    for i in usable:
        ok, rvec, _ = cv2.solvePnP(
            obj[seen[i]].astype(np.float64),
            corners[i][seen[i]].astype(np.float64),
            K,
            None,
            flags=cv2.SOLVEPNP_IPPE,
        )
        if ok:
            n = cv2.Rodrigues(rvec)[0][:, 2]
            normals[i] = n if n[2] > 0 else -n
    return normals


def select_frames(
    det: Detections, board: BoardConfig, max_frames: int, blur_min_relative: float, min_corners: int = 6
) -> Selection:
    """Choose up to ``max_frames`` detections for the solver (see the module docstring)."""
    F = det.n_frames
    reason = ["redundant"] * F
    seen = np.isfinite(det.corners).all(axis=2)
    n_seen = seen.sum(axis=1)
    sharp = det.sharpness.astype(float)
    ok_sharp = np.isfinite(sharp)
    threshold = blur_min_relative * np.median(sharp[ok_sharp]) if ok_sharp.any() else -np.inf
    for i in range(F):
        if n_seen[i] < min_corners:
            reason[i] = "too_few_corners"
        elif not ok_sharp[i] or sharp[i] < threshold:
            reason[i] = "blurred"
    normals = rough_tilts(det.corners, board, det.image_size)
    tilt_deg = np.degrees(np.arccos(np.clip(normals[:, 2], -1, 1)))
    candidates = np.flatnonzero([r == "redundant" for r in reason])
    if candidates.size == 0:
        return Selection(np.zeros(0, np.int64), reason, tilt_deg)

    gc, gr = grid_shape(det.image_size)
    ids = cell_ids(det.corners[candidates], det.image_size)  # (C, N)
    cover = np.zeros((candidates.size, gc * gr), bool)
    rows = np.repeat(np.arange(candidates.size), ids.shape[1])
    valid = ids.ravel() >= 0
    cover[rows[valid], ids.ravel()[valid]] = True

    cand_normals = np.nan_to_num(normals[candidates], nan=0.0)
    cand_tilt = np.nan_to_num(tilt_deg[candidates], nan=0.0)
    level = np.searchsorted(TILT_EDGES_DEG, cand_tilt)  # 0..3
    quadrant = (np.degrees(np.arctan2(cand_normals[:, 1], cand_normals[:, 0])) + 45.0) % 360 // 90
    tilt_bin = np.where(level == 0, 0, 1 + (level - 1) * 4 + quadrant).astype(int)

    w, h = det.image_size
    pts = det.corners[candidates].astype(float)
    centre = np.nanmean(pts, axis=1) / [w, h]
    extent = np.nanmax(pts, axis=1) - np.nanmin(pts, axis=1)
    size = np.log2(np.maximum(np.hypot(extent[:, 0], extent[:, 1]), 1.0) / np.hypot(w, h))
    feats = np.column_stack([centre, size, cand_normals[:, 0], cand_normals[:, 1]])

    lam = float(np.median(cover.sum(axis=1)))
    cell_count = np.zeros(gc * gr)
    bin_count = np.zeros(int(tilt_bin.max()) + 1)
    nearest = np.full(candidates.size, np.inf)
    tiebreak = 1e-6 * (
        sharp[candidates] / np.nanmax(sharp[candidates]) + n_seen[candidates] / board.n_corners
    )
    available = np.ones(candidates.size, bool)
    chosen: list[int] = []
    for _ in range(min(max_frames, candidates.size)):
        gain = cover @ (1.0 / (1.0 + cell_count)) + lam / (1.0 + bin_count[tilt_bin])
        gain = gain * np.minimum(1.0, nearest / NOVELTY_SCALE) + tiebreak
        gain[~available] = -np.inf
        k = int(np.argmax(gain))
        chosen.append(k)
        available[k] = False
        cell_count += cover[k]
        bin_count[tilt_bin[k]] += 1
        nearest = np.minimum(nearest, np.linalg.norm(feats - feats[k], axis=1))
    selected = candidates[np.asarray(chosen, np.int64)]
    for i in selected:
        reason[i] = "selected"
    return Selection(selected, reason, tilt_deg)
