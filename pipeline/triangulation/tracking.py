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


def track(points: np.ndarray, options: TrackingOptions) -> np.ndarray:
    """Assign each per-frame person to a track.

    Args:
        points: (T, K, J, 3) people per frame in metres; a slot that is all NaN is empty.
        options: gates and lifetimes.

    Returns:
        (T, K) int: track index of each slot, -1 for empty slots and dropped tracks. Track
        indices are 0..P-1, ordered by first appearance.
    """
    T, K, J, _ = points.shape
    present = np.isfinite(points).all(-1).sum(-1) >= 3  # (T, K)
    track_of = np.full((T, K), -1, dtype=np.int64)
    last_pos: list[np.ndarray] = []
    velocity: list[np.ndarray] = []
    last_t: list[int] = []
    alive: list[int] = []
    alpha = float(options.velocity_smoothing)
    for t in range(T):
        dets = np.flatnonzero(present[t])
        alive = [i for i in alive if t - last_t[i] <= options.max_gap_frames + 1]
        matched_dets: set[int] = set()
        if alive and dets.size:
            dt = np.array([t - last_t[i] for i in alive], dtype=np.float64)
            pred = np.stack([last_pos[i] + velocity[i] * min(d, 5.0) for i, d in zip(alive, dt)])
            cost = _median_joint_distance(pred, points[t, dets])
            gate = options.max_distance_m + options.gap_allowance_m * (dt - 1.0)
            cost = np.where(cost < gate[:, None], cost, np.inf)
            finite = np.where(np.isfinite(cost), cost, 1e6)
            rows, cols = linear_sum_assignment(finite)
            for r, c in zip(rows, cols):
                if not np.isfinite(cost[r, c]):
                    continue
                i, k = alive[r], int(dets[c])
                new = points[t, k]
                step = (new - last_pos[i]) / dt[r]
                step = np.where(np.isfinite(step), step, velocity[i])
                velocity[i] = alpha * velocity[i] + (1.0 - alpha) * step
                last_pos[i] = np.where(np.isfinite(new), new, last_pos[i] + velocity[i] * dt[r])
                last_t[i] = t
                track_of[t, k] = i
                matched_dets.add(k)
        for k in dets.tolist():
            if k in matched_dets:
                continue
            last_pos.append(points[t, k].copy())
            velocity.append(np.zeros((J, 3)))
            last_t.append(t)
            alive.append(len(last_pos) - 1)
            track_of[t, k] = len(last_pos) - 1
    n_tracks = len(last_pos)
    lengths = np.bincount(track_of[track_of >= 0], minlength=n_tracks) if n_tracks else np.zeros(0, int)
    keep = np.flatnonzero(lengths >= options.min_track_frames)
    first_seen = np.array([np.argmax((track_of == i).any(1)) for i in keep], dtype=np.int64)
    keep = keep[np.argsort(first_seen, kind="stable")]
    remap = np.full(max(n_tracks, 1), -1, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    return np.where(track_of >= 0, remap[np.clip(track_of, 0, None)], -1)
