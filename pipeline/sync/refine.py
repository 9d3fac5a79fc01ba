"""Fine offset: the offset (and optionally rate) that minimizes multi-view reprojection error.

For a trial offset, the other clock's cameras' keypoints are interpolated onto reference frames
(:func:`pipeline.triangulation.timeline.resample_keypoints`, in undistorted normalized
coordinates so the rig's distortion is applied once). For every pair (reference camera, other
camera) and every pair of detections, each joint seen in both is triangulated (weighted DLT) and
reprojected into both views; a detection pair's error is the mean over its joints, in pixels.
Each detection of the other camera keeps its best partner (that is the cross-view association),
errors are capped at ``cap_px`` (a person seen by one view only must not dominate), and the cost
is the mean. With the right offset only the 2D noise is left; a timing error ``dt`` adds about
``speed * dt`` of image motion, so the cost has a sharp minimum that a bounded scalar search
finds to a hundredth of a frame. Candidate offsets from the correlation (its highest peaks) are
each searched locally and the lowest cost wins, which resolves the side lobes of periodic motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from pipeline.geometry.rig import Rig
from pipeline.geometry.triangulate import triangulate_normalized
from pipeline.triangulation.timeline import match_neighbours, resample_keypoints, source_positions


@dataclass(frozen=True)
class CameraTrack:
    """One camera's keypoints on its own clock: (T, P, J, 3) px + score, frame numbers, frame rate."""

    name: str
    keypoints: np.ndarray
    frame_index: np.ndarray
    fps: float


class ReprojectionCost:
    """Mean capped two-view reprojection error (px) of the other clock at a trial offset and rate.

    Args:
        rig: a rig holding every camera of ``reference`` and ``other``.
        reference: the reference clock's cameras (one frame grid).
        other: the other clock's cameras.
        score_threshold: joints scoring below this are ignored.
        max_frames: reference frames used (evenly subsampled), bounding the cost of one evaluation.
        cap_px: per-detection errors are capped at this, px.
        max_match_px: see :func:`~pipeline.triangulation.timeline.resample_keypoints`.
        min_joints: a detection pair needs this many joints triangulated to count.
    """

    def __init__(self, rig: Rig, reference: list[CameraTrack], other: list[CameraTrack],
                 score_threshold: float = 0.3, max_frames: int = 200, cap_px: float = 30.0,
                 max_match_px: float = 100.0, min_joints: int = 3) -> None:
        self.cap_px = float(cap_px)
        self.min_joints = int(min_joints)
        first = reference[0]
        pick = np.unique(np.linspace(0, first.frame_index.size - 1, min(max_frames, first.frame_index.size))
                         .round().astype(np.int64))
        self.times_s = first.frame_index[pick] / first.fps
        self.ref = [self._normalized(rig, t, score_threshold) for t in reference]
        self.ref_xy = [resample_keypoints(kp, source_positions(self.times_s, t.frame_index, t.fps),
                                          matches=m)[..., :2]
                       for t, (kp, m) in zip(reference, self.ref)]
        self.other = [(t, *self._normalized(rig, t, score_threshold)) for t in other]
        self.projections = {c.name: rig.camera(c.name).projection_normalized for c in reference + other}
        self.focal = {c.name: float(rig.camera(c.name).focal_px) for c in reference + other}
        self.ref_names = [t.name for t in reference]
        self.max_match_px = max_match_px
        self.evaluations = 0

    @staticmethod
    def _normalized(rig: Rig, track: CameraTrack, score_threshold: float):
        kp = np.asarray(track.keypoints, dtype=np.float64).copy()
        bad = ~(kp[..., 2] >= score_threshold) | ~np.isfinite(kp[..., :2]).all(-1)
        kp[bad] = np.nan
        matches = match_neighbours(kp)
        cam = rig.camera(track.name)
        norm = kp.copy()
        norm[..., :2] = cam.undistort_points(kp[..., :2].reshape(-1, 2)).reshape(kp.shape[:-1] + (2,))
        return norm, matches

    def __call__(self, offset_s: float, rate: float = 1.0) -> float:
        """The cost at a trial offset (reference time of the other clock's frame 0) and rate."""
        self.evaluations += 1
        errors = []
        for track, norm, matches in self.other:
            pos = source_positions(self.times_s, track.frame_index, track.fps, offset_s, rate)
            xy_o = resample_keypoints(norm, pos, matches=matches)[..., :2]
            for name, xy_r in zip(self.ref_names, self.ref_xy):
                errors.append(self._pair_errors(name, xy_r, track.name, xy_o))
        err = np.concatenate([e.ravel() for e in errors]) if errors else np.zeros(0)
        if err.size == 0:
            return float("inf")
        return float(np.minimum(err, self.cap_px).mean())

    def _pair_errors(self, cam_r: str, xy_r: np.ndarray, cam_o: str, xy_o: np.ndarray) -> np.ndarray:
        """Per (frame, other detection): the best partner's mean reprojection error, px (seen ones only)."""
        N, P, J, _ = xy_r.shape
        Q = xy_o.shape[1]
        a = np.broadcast_to(xy_r[:, :, None], (N, P, Q, J, 2))
        b = np.broadcast_to(xy_o[:, None, :], (N, P, Q, J, 2))
        xy = np.stack([a.reshape(-1, 2), b.reshape(-1, 2)])
        both = np.isfinite(xy).all(-1).all(0)
        if not both.any():
            return np.zeros(0)
        proj = np.stack([self.projections[cam_r], self.projections[cam_o]])
        focal = np.array([self.focal[cam_r], self.focal[cam_o]])
        sel = xy[:, both]
        pts = triangulate_normalized(sel, np.ones(sel.shape[:2]), proj, focal, reweight=0)
        pc = np.einsum("cij,nj->cni", proj[:, :, :3], pts) + proj[:, None, :, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = pc[..., :2] / pc[..., 2:3]
        e = (np.linalg.norm(rep - sel, axis=-1) * focal[:, None]).mean(0)
        full = np.full(both.size, np.nan)
        full[both] = e
        full = full.reshape(N, P, Q, J)
        n = np.isfinite(full).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n >= self.min_joints, np.nansum(full, -1) / np.maximum(n, 1), np.inf)
        best = mean.min(axis=1)  # (N, Q): each other-camera detection's best partner
        seen = (np.isfinite(xy_o).all(-1).sum(-1) >= self.min_joints)  # (N, Q)
        return np.where(np.isfinite(best), best, self.cap_px)[seen]


@dataclass(frozen=True)
class RefineResult:
    """Offset (and rate) minimizing :class:`ReprojectionCost`.

    Attributes:
        offset_s: best offset, seconds.
        rate: best rate (1.0 unless estimated).
        cost_px: the cost there, px.
        candidate_costs: (candidate offset s, its best local cost px) for every candidate tried.
        runner_up_px: the best cost of the other candidates (inf if none): the geometric margin.
    """

    offset_s: float
    rate: float
    cost_px: float
    candidate_costs: tuple[tuple[float, float], ...]
    runner_up_px: float


def refine_offset(cost: ReprojectionCost, candidates_s: tuple[float, ...] | list[float], fps: float,
                  window_frames: float = 2.0, step_frames: float = 1.0, xtol_frames: float = 0.005,
                  estimate_rate: bool = False, max_rate_deviation: float = 0.01) -> RefineResult:
    """Search each candidate's neighbourhood (grid, then bounded Brent) and keep the lowest cost.

    Args:
        cost: the cost function.
        candidates_s: candidate offsets (the correlation's highest peaks), seconds.
        fps: the other clock's frame rate (sets the grid and tolerances in frames).
        window_frames: half-width of the grid around each candidate, frames.
        step_frames: grid step, frames.
        xtol_frames: final tolerance, frames.
        estimate_rate: also fit the clock-rate ratio (Nelder-Mead over offset and rate from the best offset).
        max_rate_deviation: the rate is kept within ``1 +- max_rate_deviation``.
    """
    if not candidates_s:
        raise ValueError("refine_offset needs at least one candidate offset")
    frame = 1.0 / fps
    grid = np.arange(-window_frames, window_frames + step_frames / 2, step_frames) * frame
    found: list[tuple[float, float]] = []
    for c in candidates_s:
        costs = np.array([cost(c + g) for g in grid])
        i = int(np.argmin(costs))
        found.append((float(c + grid[i]), float(costs[i])))
    order = np.argsort([f[1] for f in found])
    best_grid, _ = found[order[0]]
    res = minimize_scalar(lambda o: cost(o), bounds=(best_grid - step_frames * frame, best_grid + step_frames * frame),
                          method="bounded", options={"xatol": xtol_frames * frame})
    offset, value = float(res.x), float(res.fun)
    grid_best = found[order[0]][1]
    if grid_best < value:
        offset, value = best_grid, grid_best
    rate = 1.0
    if estimate_rate:
        offset, rate, value = _refine_rate(cost, offset, value, fps, max_rate_deviation, xtol_frames)
    others = [f[1] for i, f in enumerate(found) if i != order[0] and abs(f[0] - offset) > window_frames * frame]
    return RefineResult(offset, rate, value, tuple(found), min(others) if others else float("inf"))


def _refine_rate(cost: ReprojectionCost, offset: float, value: float, fps: float, max_dev: float,
                 xtol_frames: float) -> tuple[float, float, float]:
    """Fit (offset, rate) together by Nelder-Mead; keeps ``(offset, 1.0)`` unless that lowers the cost.

    The offset is parametrized at the middle of the take (the reference time ``m`` of camera-clock
    time ``tau_m``), which decouples it from the rate: ``offset = m - rate * tau_m``.
    """
    tau_m = float(np.median(cost.times_s)) - offset

    def f(x: np.ndarray) -> float:
        m, drift = float(x[0]), float(x[1])
        if abs(drift) > max_dev:
            return float("inf")
        rate = 1.0 + drift
        return cost(m - rate * tau_m, rate)

    x0 = np.array([offset + tau_m, 0.0])
    simplex = np.array([x0, x0 + [0.3 / fps, 0.0], x0 + [0.0, 2e-4]])
    res = minimize(f, x0, method="Nelder-Mead",
                   options={"xatol": xtol_frames / fps, "fatol": 1e-4, "initial_simplex": simplex, "maxfev": 200})
    if not np.isfinite(res.fun) or res.fun >= value:
        return offset, 1.0, value
    rate = 1.0 + float(res.x[1])
    return float(res.x[0] - rate * tau_m), rate, float(res.fun)
