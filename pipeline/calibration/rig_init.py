"""Initial rig: per-view board poses (PnP), degenerate views, camera poses chained over the spanning tree.

1. Every view (camera, frame) with the board gets a board -> camera pose from ``cv2.solvePnP``
   (IPPE for the planar board, refined by Levenberg-Marquardt). A view is dropped, with its
   reason, when it has fewer than ``min_corners`` corners (``too_few_corners``), its corners lie
   on one line (``collinear``), PnP fails (``pnp_failed``), the board is seen edge-on (angle
   between the board normal and the line of sight above ``max_view_angle_deg``: ``edge_on``),
   or the pose does not explain the corners (RMS above ``max_pnp_rms_px``: ``bad_fit``).
2. For each spanning-tree edge (a, b), every frame both see gives a relative pose
   ``T_b T_a^-1``; the robust mean keeps the candidates within a few degrees of the medoid
   rotation (planar PnP flips land far away), averages their rotations (chordal L2 mean) and
   takes the component-wise median translation.
3. Camera poses are chained from the reference camera along the tree; each board pose in the
   world is the mean over the cameras that see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration.covisibility import CovisibilityGraph, Observations, tree_order

DROP_REASONS = ("too_few_corners", "collinear", "pnp_failed", "edge_on", "bad_fit", "not_covisible", "outlier")


@dataclass(frozen=True)
class ViewCheck:
    """Thresholds of a usable view."""

    min_corners: int = 8
    max_view_angle_deg: float = 75.0
    max_pnp_rms_px: float = 5.0


@dataclass(frozen=True)
class ViewPoses:
    """Board -> camera poses of every usable view.

    Attributes:
        valid: bool (C, F), the view is usable.
        R: float64 (C, F, 3, 3) board -> camera rotation (identity where not valid).
        t: float64 (C, F, 3) board -> camera translation, metres.
        rms_px: float64 (C, F) PnP reprojection RMS (NaN where not valid).
        dropped: list of ``(camera index, frame position, reason, detail)``.
    """

    valid: np.ndarray
    R: np.ndarray
    t: np.ndarray
    rms_px: np.ndarray
    dropped: list[tuple[int, int, str, str]]


def collinear(points_board: np.ndarray, tol: float = 0.05) -> bool:
    """True when the board points (M, 3) span (almost) a line: their second principal extent is
    under ``tol`` times the first."""
    xy = points_board[:, :2] - points_board[:, :2].mean(axis=0)
    s = np.linalg.svd(xy, compute_uv=False)
    return bool(s.shape[0] < 2 or s[1] < tol * s[0])


def view_pose(obj: np.ndarray, uv: np.ndarray, K: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Board -> camera (R (3, 3), t (3,)) from M >= 4 correspondences, or None when PnP fails."""
    obj = np.ascontiguousarray(obj, np.float64).reshape(-1, 1, 3)
    img = np.ascontiguousarray(uv, np.float64).reshape(-1, 1, 2)
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            return None
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist, rvec, tvec)
    except cv2.error:
        return None
    if not (np.isfinite(rvec).all() and np.isfinite(tvec).all()) or tvec[2, 0] <= 0:
        return None
    return cv2.Rodrigues(rvec)[0], tvec.ravel()


def board_view_poses(obs: Observations, Ks: Sequence[np.ndarray], dists: Sequence[np.ndarray],
                     object_points: np.ndarray, check: ViewCheck) -> ViewPoses:
    """Solve and check every view (see the module docstring).

    Args:
        obs: the observations (C cameras, F frames, N corners).
        Ks, dists: per camera, (3, 3) and OpenCV distortion.
        object_points: (N, 3) board-frame corners, metres.
        check: the thresholds.
    """
    C, F = len(obs.cameras), obs.frames.shape[0]
    seen = obs.seen()
    valid = np.zeros((C, F), bool)
    R = np.tile(np.eye(3), (C, F, 1, 1))
    t = np.zeros((C, F, 3))
    rms = np.full((C, F), np.nan)
    dropped: list[tuple[int, int, str, str]] = []
    centre = object_points.mean(axis=0)
    for c in range(C):
        for f in np.flatnonzero(seen[c].any(axis=1)):
            m = seen[c, f]
            n = int(m.sum())
            if n < max(check.min_corners, 4):
                dropped.append((c, int(f), "too_few_corners", f"{n} corners"))
                continue
            obj, uv = object_points[m], obs.corners[c, f, m]
            if collinear(obj):
                dropped.append((c, int(f), "collinear", f"{n} corners on one line"))
                continue
            pose = view_pose(obj, uv, Ks[c], dists[c])
            if pose is None:
                dropped.append((c, int(f), "pnp_failed", "solvePnP found no pose"))
                continue
            Rv, tv = pose
            sight = Rv @ centre + tv
            cos = abs(float(Rv[:, 2] @ sight)) / float(np.linalg.norm(sight))
            angle = float(np.degrees(np.arccos(min(cos, 1.0))))
            if angle > check.max_view_angle_deg:
                dropped.append((c, int(f), "edge_on", f"board at {angle:.0f} deg to the line of sight"))
                continue
            proj, _ = cv2.projectPoints(obj.reshape(-1, 1, 3), cv2.Rodrigues(Rv)[0], tv, Ks[c], dists[c])
            err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - uv) ** 2, axis=1))))
            if err > check.max_pnp_rms_px:
                dropped.append((c, int(f), "bad_fit", f"PnP RMS {err:.1f} px"))
                continue
            valid[c, f], R[c, f], t[c, f], rms[c, f] = True, Rv, tv, err
    return ViewPoses(valid, R, t, rms, dropped)


def rotation_mean(Rs: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations (K, 3, 3): the rotation nearest to their sum."""
    U, _, Vt = np.linalg.svd(np.sum(Rs, axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (degrees) of ``Ra^T Rb`` over broadcast batches of (…, 3, 3)."""
    tr = np.einsum("...ji,...ji->...", Ra, Rb)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def robust_relative_pose(Ra: np.ndarray, ta: np.ndarray, Rb: np.ndarray, tb: np.ndarray,
                         max_samples: int = 200, inlier_deg: float = 3.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Camera a -> camera b pose from K shared board views.

    Args:
        Ra, Rb: (K, 3, 3) board -> camera rotations in a and b; ta, tb: (K, 3).
        max_samples: at most this many (evenly spaced) candidates enter the medoid search.
        inlier_deg: candidates further than ``max(inlier_deg, 3 x median distance)`` from the
            medoid are left out of the mean.

    Returns:
        (R_ba (3, 3), t_ba (3,), inliers) with ``X_b = R_ba X_a + t_ba``.
    """
    Rr = Rb @ np.transpose(Ra, (0, 2, 1))
    K = Rr.shape[0]
    pick = np.unique(np.linspace(0, K - 1, min(K, max_samples)).round().astype(int))
    dist = rotation_angle_deg(Rr[pick][:, None], Rr[pick][None, :])
    medoid = Rr[pick[int(np.argmin(dist.sum(axis=1)))]]
    d = rotation_angle_deg(medoid[None], Rr)
    keep = d <= max(inlier_deg, 3.0 * float(np.median(d)))
    R = rotation_mean(Rr[keep])
    tr = tb[keep] - np.einsum("ij,kj->ki", R, ta[keep])
    return R, np.median(tr, axis=0), int(keep.sum())


def chain_cameras(poses: ViewPoses, graph: CovisibilityGraph, root: int) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera poses (world = the root camera) chained along the spanning tree.

    Returns:
        R (C, 3, 3), t (C, 3).
    """
    C = poses.valid.shape[0]
    R = np.tile(np.eye(3), (C, 1, 1))
    t = np.zeros((C, 3))
    for a, b in tree_order(graph, root):
        both = poses.valid[a] & poses.valid[b]
        Rba, tba, _ = robust_relative_pose(poses.R[a, both], poses.t[a, both], poses.R[b, both], poses.t[b, both])
        R[b] = Rba @ R[a]
        t[b] = Rba @ t[a] + tba
    return R, t


def board_world_poses(poses: ViewPoses, cam_R: np.ndarray, cam_t: np.ndarray,
                      frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Board -> world poses of the frame positions ``frames`` (B,), averaged over the cameras.

    Returns:
        R (B, 3, 3), t (B, 3).
    """
    B = len(frames)
    R = np.tile(np.eye(3), (B, 1, 1))
    t = np.zeros((B, 3))
    for i, f in enumerate(frames):
        cams = np.flatnonzero(poses.valid[:, f])
        Rw = np.einsum("cji,cjk->cik", cam_R[cams], poses.R[cams, f])  # R_c^T R_cb
        tw = np.einsum("cji,cj->ci", cam_R[cams], poses.t[cams, f] - cam_t[cams])
        R[i] = rotation_mean(Rw)
        t[i] = np.median(tw, axis=0) if len(cams) > 2 else tw.mean(axis=0)
    return R, t
