"""Identity tracking over time: per-frame 3D people -> stable person slots.

Each track predicts its next pose with a constant-velocity model (per joint, velocity smoothed
over frames). Per frame, tracks and the frame's triangulated people are matched by the Hungarian
algorithm on the median 3D joint distance to the prediction, gated at ``max_distance_m`` (plus an
allowance that grows with the time since the track was last seen). Unmatched people start new
tracks, so the number of people is not fixed in advance; a track unseen for more than
``max_gap_frames`` ends, and tracks shorter than ``min_track_frames`` are dropped as spurious.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class TrackingOptions:
    """Settings of :func:`track`.

    Attributes:
        max_distance_m: gate on the mean joint distance to a track's prediction, metres.
        gap_allowance_m: added to the gate per frame since the track was last seen, metres.
        max_gap_frames: a track unseen for longer ends.
        min_track_frames: shorter tracks are dropped.
        velocity_smoothing: weight of the previous velocity in the exponential update (0..1).
    """

    max_distance_m: float = 0.4
    gap_allowance_m: float = 0.05
    max_gap_frames: int = 15
    min_track_frames: int = 5
    velocity_smoothing: float = 0.5


def _median_joint_distance(a: np.ndarray, b: np.ndarray, min_common: int = 3) -> np.ndarray:
    """a (N, J, 3), b (M, J, 3) -> (N, M) median distance over joints finite in both (inf if too few).

    The median, not the mean: one swapped or badly triangulated limb must not push a person past
    the gate and break its track.
    """
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)  # (N, M, J)
    n = np.isfinite(d).sum(-1)
    if d.size == 0:
        return np.full(d.shape[:2], np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled by n below
        med = np.nanmedian(d, axis=-1)
    return np.where(n >= min_common, med, np.inf)


class Tracker:
    """:func:`track` fed block by block: the state carries over, so any split gives the same tracks.

    Call :meth:`step` with consecutive blocks of frames, then :meth:`remap` once to turn the raw
    track numbers it returned into the final ones (short tracks dropped, the rest numbered by first
    appearance). Memory grows with the number of tracks, not with the frames.
    """

    def __init__(self, options: TrackingOptions) -> None:
        self.options = options
        self.t = 0  # frames seen so far
        self.last_pos: list[np.ndarray] = []
        self.velocity: list[np.ndarray] = []
        self.last_t: list[int] = []
        self.first_t: list[int] = []
        self.length: list[int] = []
        self.alive: list[int] = []

    def step(self, points: np.ndarray) -> np.ndarray:
        """Assign the people of the next ``points`` (t, K, J, 3) frames (metres; an all-NaN slot is empty).

        Returns:
            (t, K) int raw track number of each slot (-1 = empty); pass through :meth:`remap`.
        """
        opt = self.options
        n_frames, K, J, _ = points.shape
        present = np.isfinite(points).all(-1).sum(-1) >= 3  # (t, K)
        raw = np.full((n_frames, K), -1, dtype=np.int64)
        alpha = float(opt.velocity_smoothing)
        last_pos, velocity, last_t = self.last_pos, self.velocity, self.last_t
        for i in range(n_frames):
            t = self.t + i
            dets = np.flatnonzero(present[i])
            self.alive = alive = [a for a in self.alive if t - last_t[a] <= opt.max_gap_frames + 1]
            matched_dets: set[int] = set()
            if alive and dets.size:
                dt = np.array([t - last_t[a] for a in alive], dtype=np.float64)
                pred = np.stack([last_pos[a] + velocity[a] * min(d, 5.0) for a, d in zip(alive, dt)])
                cost = _median_joint_distance(pred, points[i, dets])
                gate = opt.max_distance_m + opt.gap_allowance_m * (dt - 1.0)
                cost = np.where(cost < gate[:, None], cost, np.inf)
                rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
                for r, c in zip(rows, cols):
                    if not np.isfinite(cost[r, c]):
                        continue
                    a, k = alive[r], int(dets[c])
                    new = points[i, k]
                    step = (new - last_pos[a]) / dt[r]
                    step = np.where(np.isfinite(step), step, velocity[a])
                    velocity[a] = alpha * velocity[a] + (1.0 - alpha) * step
                    last_pos[a] = np.where(np.isfinite(new), new, last_pos[a] + velocity[a] * dt[r])
                    last_t[a] = t
                    self.length[a] += 1
                    raw[i, k] = a
                    matched_dets.add(k)
            for k in dets.tolist():
                if k in matched_dets:
                    continue
                last_pos.append(points[i, k].copy())
                velocity.append(np.zeros((J, 3)))
                last_t.append(t)
                self.first_t.append(t)
                self.length.append(1)
                alive.append(len(last_pos) - 1)
                raw[i, k] = len(last_pos) - 1
        self.t += n_frames
        return raw

    def remap(self) -> np.ndarray:
        """(n_raw + 1,) final index of each raw track number, -1 = dropped; index with ``raw`` (``-1`` maps to -1)."""
        length = np.asarray(self.length, dtype=np.int64)
        keep = np.flatnonzero(length >= self.options.min_track_frames)
        keep = keep[np.argsort(np.asarray(self.first_t, dtype=np.int64)[keep], kind="stable")]
        remap = np.full(length.size + 1, -1, dtype=np.int64)  # the extra last entry: raw -1 stays -1
        remap[keep] = np.arange(keep.size)
        return remap


def track(points: np.ndarray, options: TrackingOptions) -> np.ndarray:
    """Assign each per-frame person to a track.

    Args:
        points: (T, K, J, 3) people per frame in metres; a slot that is all NaN is empty.
        options: gates and lifetimes.

    Returns:
        (T, K) int: track index of each slot, -1 for empty slots and dropped tracks. Track
        indices are 0..P-1, ordered by first appearance.
    """
    tracker = Tracker(options)
    raw = tracker.step(points)
    return tracker.remap()[raw]
