"""Resample a camera's 2D keypoints onto another clock (the reference timeline of ``sync.yaml``).

A camera's frame ``k`` was exposed at reference time ``t = offset_s + rate * k / fps`` (``offset_s``:
reference time of its frame 0; ``rate``: reference seconds per second of the camera's clock). So a
reference time ``t`` falls at the fractional camera frame ``k = (t - offset_s) / rate * fps``
(:func:`source_positions`), between frames ``floor(k)`` and ``floor(k) + 1``.

Person slots in ``pose2d/<cam>.npz`` are that frame's detections, not identities: slot 0 of one
frame and slot 0 of the next may be different people. :func:`resample_keypoints` therefore first
matches the detections of each pair of neighbouring frames (Hungarian assignment on the mean
distance of the joints seen in both, gated by ``max_match_px``), then interpolates each matched
pair linearly (x, y and score). A joint seen in only one of the two frames, and a detection with
no partner, take the nearest frame's value (or stay missing when the nearest frame lacks it), so
a person appearing or leaving is never smeared. Output slots are re-packed per reference frame:
slot numbers stay arbitrary, as pose2d's are. Reference times outside the camera's recording give
missing keypoints (NaN, score 0).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

NO_MATCH = -1


def _check_keypoints(keypoints: np.ndarray) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (T, P, J, 3); got {kp.shape}")
    return kp


def source_positions(times_s: np.ndarray, frame_index: np.ndarray, fps: float, offset_s: float = 0.0,
                     rate: float = 1.0) -> np.ndarray:
    """Fractional array positions of reference times in a camera's keypoint array.

    Args:
        times_s: (N,) reference times, seconds.
        frame_index: (T,) the camera's frame numbers (increasing), as in ``pose2d/<cam>.npz``.
        fps: the camera's nominal frame rate.
        offset_s: reference time of the camera's frame 0, seconds.
        rate: reference seconds per camera-clock second (1 = same clock rate).

    Returns:
        (N,) positions in ``[0, T - 1]`` (fractional), NaN outside the recorded frames.
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    frames = np.asarray(frame_index, dtype=np.float64)
    if frames.ndim != 1 or frames.size == 0:
        raise ValueError(f"frame_index must have shape (T,) with T >= 1; got {frames.shape}")
    if fps <= 0 or rate <= 0:
        raise ValueError(f"fps and rate must be > 0; got fps={fps}, rate={rate}")
    k = (times_s - offset_s) / rate * fps
    pos = np.interp(k, frames, np.arange(frames.size, dtype=np.float64))
    tol = 1e-6
    pos[(k < frames[0] - tol) | (k > frames[-1] + tol) | ~np.isfinite(k)] = np.nan
    return pos


def frame_times(frame_index: np.ndarray, fps: float, offset_s: float = 0.0, rate: float = 1.0) -> np.ndarray:
    """(T,) reference times of a camera's frames: ``offset_s + rate * frame_index / fps``."""
    return offset_s + rate * np.asarray(frame_index, dtype=np.float64) / fps


def match_costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean pixel distance of the joints seen in both, for every detection pair of two frame stacks.

    Args:
        a: (N, P, J, >=2) detections; NaN x/y = joint missing.
        b: (N, Q, J, >=2).

    Returns:
        (N, P, Q) mean distance in pixels; inf where two detections share no joint.
    """
    d = np.linalg.norm(a[:, :, None, :, :2] - b[:, None, :, :, :2], axis=-1)  # (N, P, Q, J)
    seen = np.isfinite(d)
    n = seen.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, d, 0.0).sum(-1) / n
    return np.where(n > 0, mean, np.inf)


def match_neighbours(keypoints: np.ndarray, max_match_px: float = np.inf) -> np.ndarray:
    """Match each frame's detections to the next frame's (Hungarian on :func:`match_costs`).

    Args:
        keypoints: (T, P, J, 3) one camera's keypoints (x, y, score).
        max_match_px: pairs farther apart than this (mean joint distance) stay unmatched.

    Returns:
        (T - 1, P) int: for slot p of frame k, the matching slot of frame k + 1, or -1.
    """
    kp = _check_keypoints(keypoints)
    T, P = kp.shape[:2]
    out = np.full((max(T - 1, 0), P), NO_MATCH, dtype=np.int64)
    if T < 2 or P == 0:
        return out
    cost = match_costs(kp[:-1], kp[1:])  # (T-1, P, P)
    ok = np.isfinite(cost) & (cost <= max_match_px)
    if P == 1:
        out[:, 0] = np.where(ok[:, 0, 0], 0, NO_MATCH)
        return out
    big = 1e12
    for k in np.flatnonzero(ok.any(axis=(1, 2))):
        rows, cols = linear_sum_assignment(np.where(ok[k], cost[k], big))
        good = ok[k, rows, cols]
        out[k, rows[good]] = cols[good]
    return out


def _slot_plans(keypoints: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per neighbour pair (k, k+1): which slots of each frame fill each output slot.

    Returns:
        next_low: (T-1, P) slot of frame k+1 paired with output slot p (= slot p of frame k), or -1;
            used when the reference time is nearer frame k.
        prev_high, next_high: (T-1, P) slots of frames k and k+1 for output slot p when nearer
            frame k+1: matched pairs keep their slot, unmatched detections of frame k+1 take the
            free slots; -1 = none.
    """
    T1, P = matches.shape
    present = np.isfinite(keypoints[..., :2]).all(-1).any(-1)  # (T, P)
    next_low = matches.copy()
    prev_high = np.where(matches >= 0, np.arange(P)[None, :], NO_MATCH)
    next_high = matches.copy()
    for k in range(T1):
        taken = set(matches[k][matches[k] >= 0].tolist())
        extra = [q for q in np.flatnonzero(present[k + 1]) if q not in taken]
        if not extra:
            continue
        free = np.flatnonzero(matches[k] < 0)
        next_high[k, free[:len(extra)]] = extra
    return next_low, prev_high, next_high


def _gather(frames: np.ndarray, k: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """frames (T, P, J, 3), k (N,), slots (N, P) with -1 = empty -> (N, P, J, 3)."""
    out = frames[k[:, None], np.clip(slots, 0, None)]
    out[slots < 0] = np.nan
    return out


def _valid_positions(pos: np.ndarray, T: int) -> np.ndarray:
    """(N,) bool: the positions (N,) inside ``[0, T - 1]`` of a T-frame source (NaN = outside)."""
    return np.isfinite(pos) & (pos >= 0) & (pos <= T - 1)


def _brackets(p: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Valid positions p (n,) in a source of T >= 2 frames -> (k (n,) int64, a (n,)).

    p lies between frames k and k + 1 (k = floor(p), at most T - 2) and a = p - k in [0, 1].
    """
    k = np.clip(np.floor(p).astype(np.int64), 0, T - 2)
    return k, p - k


def source_window(positions: np.ndarray, T: int) -> tuple[int, int]:
    """The source frames ``[lo, hi)`` that :func:`resample_keypoints` reads for ``positions`` (N,) in a T-frame source.

    Each valid position p uses frames k and k + 1 only (k = floor(p), at most T - 2; matching
    pairs neighbouring frames only), so ``resample_keypoints(keypoints[lo:hi], positions - lo)``
    equals ``resample_keypoints(keypoints, positions)`` exactly. ``(0, 0)`` when no position is valid.
    """
    pos = np.asarray(positions, dtype=np.float64)
    valid = _valid_positions(pos, T)
    if not valid.any():
        return 0, 0
    if T == 1:
        return 0, 1
    k, _ = _brackets(pos[valid], T)
    return int(k.min()), int(k.max()) + 2


def resampled_coverage(observed: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Which rows of :func:`resample_keypoints` at ``positions`` hold any joint, without resampling.

    Args:
        observed: (T,) bool, source frame t has a joint with finite x and y.
        positions: (N,) fractional source positions (NaN = outside).

    Returns:
        (N,) bool: row n of ``resample_keypoints(keypoints, positions)`` has a finite joint. A row
        takes every detection of its nearer frame (k when p - k < 0.5, else k + 1), interpolated
        where the other frame has the joint too, so it is covered exactly when that frame is.
    """
    obs = np.asarray(observed, dtype=bool)
    pos = np.asarray(positions, dtype=np.float64)
    out = np.zeros(pos.shape, dtype=bool)
    valid = _valid_positions(pos, obs.size)
    if not valid.any():
        return out
    if obs.size == 1:
        out[valid] = obs[0]
        return out
    k, a = _brackets(pos[valid], obs.size)
    out[valid] = obs[k + (a >= 0.5)]
    return out


def resample_keypoints(keypoints: np.ndarray, positions: np.ndarray, max_match_px: float = 100.0,
                       matches: np.ndarray | None = None) -> np.ndarray:
    """Interpolate one camera's keypoints at fractional array positions (see the module doc).

    Args:
        keypoints: (T, P, J, 3) x, y (px), score; NaN x/y = missing.
        positions: (N,) fractional positions in ``[0, T - 1]`` (from :func:`source_positions`);
            NaN = outside the recording.
        max_match_px: neighbouring-frame detections farther apart than this (mean joint distance,
            px) are treated as different people.
        matches: (T - 1, P) precomputed :func:`match_neighbours` of these keypoints (e.g. matched
            in pixels while interpolating undistorted coordinates); None = computed here.

    Returns:
        (N, P, J, 3) float64; missing joints are NaN with score 0.
    """
    kp = _check_keypoints(keypoints)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 1:
        raise ValueError(f"positions must have shape (N,); got {pos.shape}")
    T, P, J, _ = kp.shape
    N = pos.size
    out = np.full((N, P, J, 3), np.nan)
    out[..., 2] = 0.0
    valid = _valid_positions(pos, T)
    if not valid.any() or P == 0:
        return out
    if T == 1:
        out[valid] = kp[0]
        return _clean(out)
    kp = kp.copy()
    kp[~np.isfinite(kp[..., :2]).all(-1)] = np.nan
    k, frac = _brackets(pos[valid], T)
    a = frac[:, None, None]  # (n, 1, 1)
    if matches is None:
        matches = match_neighbours(kp, max_match_px)
    elif matches.shape != (T - 1, P):
        raise ValueError(f"matches must have shape ({T - 1}, {P}); got {matches.shape}")
    next_low, prev_high, next_high = _slot_plans(kp, matches)
    high = (a[:, 0, 0] >= 0.5)
    ident = np.broadcast_to(np.arange(P), (k.size, P))
    prev_slots = np.where(high[:, None], prev_high[k], ident)
    next_slots = np.where(high[:, None], next_high[k], next_low[k])
    A = _gather(kp, k, prev_slots)
    B = _gather(kp, k + 1, next_slots)
    okA = np.isfinite(A[..., :2]).all(-1)
    okB = np.isfinite(B[..., :2]).all(-1)
    both = okA & okB
    lerp = (1.0 - a[..., None]) * A + a[..., None] * B
    nearest = np.where(high[:, None, None, None], B, A)
    res = np.where(both[..., None], lerp, nearest)
    out[valid] = res
    return _clean(out)


def _clean(kp: np.ndarray) -> np.ndarray:
    missing = ~np.isfinite(kp[..., :2]).all(-1)
    kp[missing, :2] = np.nan
    kp[missing, 2] = 0.0
    return kp


def resample_camera(keypoints: np.ndarray, frame_index: np.ndarray, fps: float, times_s: np.ndarray,
                    offset_s: float = 0.0, rate: float = 1.0, max_match_px: float = 100.0) -> np.ndarray:
    """One camera's keypoints at reference times: :func:`source_positions` + :func:`resample_keypoints`.

    Returns:
        (N, P, J, 3) keypoints at ``times_s`` (N,), NaN/score 0 outside the recording.
    """
    pos = source_positions(times_s, frame_index, fps, offset_s, rate)
    return resample_keypoints(keypoints, pos, max_match_px)
