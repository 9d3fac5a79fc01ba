"""Temporal post-processing of (T, ...) trajectories: gap filling and smoothing filters.

All functions take arrays with time on axis 0 and any trailing shape (people, joints, xyz), NaN
where unknown, and work on every trajectory at once.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, filtfilt


def _neighbours(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (t, ...) the index of the last valid sample at or before t and the next at or after.

    -1 / T where none exists.
    """
    T = valid.shape[0]
    idx = np.arange(T).reshape((T,) + (1,) * (valid.ndim - 1))
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, T), 0), axis=0), 0)
    return prev, nxt


def fill_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate runs of at most ``max_gap`` missing frames between two known ones.

    Args:
        x: (T, ..., D) trajectories; a sample is missing when any of its D values is NaN.
        max_gap: longest run of missing frames to fill (0 = none).

    Returns:
        A filled copy; longer gaps and leading/trailing gaps stay NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if max_gap <= 0 or x.shape[0] < 3:
        return x.copy()
    valid = np.isfinite(x).all(-1)
    prev, nxt = _neighbours(valid)
    T = x.shape[0]
    t = np.arange(T).reshape((T,) + (1,) * (valid.ndim - 1))
    fill = ~valid & (prev >= 0) & (nxt < T) & (nxt - prev - 1 <= max_gap)
    p = np.clip(prev, 0, T - 1)
    n = np.clip(nxt, 0, T - 1)
    xp = np.take_along_axis(x, p[..., None], axis=0)
    xn = np.take_along_axis(x, n[..., None], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = ((t - p) / np.maximum(n - p, 1))[..., None]
    interp = xp + a * (xn - xp)
    return np.where(fill[..., None], interp, x)


def _fill_all(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill every NaN by linear interpolation / edge hold so a filter can run; returns (filled, valid)."""
    valid = np.isfinite(x)
    prev, nxt = _neighbours(valid)
    T = x.shape[0]
    t = np.arange(T).reshape((T,) + (1,) * (x.ndim - 1))
    p = np.where(prev >= 0, prev, nxt).clip(0, T - 1)
    n = np.where(nxt < T, nxt, prev).clip(0, T - 1)
    xp = np.take_along_axis(x, p, axis=0)
    xn = np.take_along_axis(x, n, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(n > p, (t - p) / np.maximum(n - p, 1), 0.0)
    filled = np.where(valid, x, xp + a * (xn - xp))
    return np.nan_to_num(filled), valid


def butterworth(x: np.ndarray, fps: float, cutoff_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase (forward-backward) low-pass Butterworth filter along time.

    Missing samples are bridged by interpolation for filtering only and stay NaN in the output.
    Trajectories too short for the filter's padding are returned unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    if cutoff_hz <= 0 or cutoff_hz >= fps / 2:
        raise ValueError(f"cutoff_hz must be in (0, fps/2 = {fps / 2}); got {cutoff_hz}")
    b, a = butter(order, cutoff_hz / (fps / 2), btype="low")
    padlen = 3 * max(len(a), len(b))
    if x.shape[0] <= padlen:
        return x.copy()

    def smooth(v: np.ndarray) -> np.ndarray:
        filled, valid = _fill_all(v)
        return np.where(valid, filtfilt(b, a, filled, axis=0, padlen=padlen), np.nan)

    if x.ndim < 2:
        return smooth(x)
    # one person (axis 1) at a time: the temporaries stay (T, ...) of one track, not of all of them
    out = np.empty_like(x)
    for p in range(x.shape[1]):
        out[:, p] = smooth(x[:, p])
    return out


def one_euro(x: np.ndarray, fps: float, min_cutoff_hz: float = 1.0, beta: float = 0.5,
             d_cutoff_hz: float = 1.0) -> np.ndarray:
    """One-euro filter (Casiez et al. 2012), causal, adaptive cutoff ``min_cutoff + beta |dx/dt|``.

    Runs over time once, vectorized over every trajectory; ``beta`` is in 1/(unit/s) (here 1/(m/s)).
    A gap restarts the filter at the next known sample; missing samples stay NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full_like(x, np.nan)
    if x.shape[0] == 0:
        return out
    dt = 1.0 / fps

    def alpha(cutoff: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    prev = np.full(x.shape[1:], np.nan)
    dprev = np.zeros(x.shape[1:])
    a_d = alpha(d_cutoff_hz)
    for t in range(x.shape[0]):
        cur = x[t]
        ok = np.isfinite(cur)
        start = ok & ~np.isfinite(prev)
        dx = np.where(ok & ~start, (cur - prev) / dt, 0.0)
        dhat = a_d * dx + (1.0 - a_d) * dprev
        a = alpha(min_cutoff_hz + beta * np.abs(dhat))
        val = np.where(start, cur, a * cur + (1.0 - a) * prev)
        out[t] = np.where(ok, val, np.nan)
        prev = np.where(ok, val, np.nan)
        dprev = np.where(ok & ~start, dhat, 0.0)
    return out
