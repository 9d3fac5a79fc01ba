"""Motion signals for the coarse offset: how fast the people move in each camera, over time.

As Pose2Sim does, the signal is 2D keypoint speed, by default its vertical component. Because
person slots are detections, not identities, each frame's detections are first matched to the
next frame's (:func:`pipeline.triangulation.timeline.match_neighbours`). For each matched pair
each joint seen in both frames gives a displacement, divided by the detection's size (its
keypoints' bounding-box diagonal) so that near and far cameras weigh alike, and by the frame
interval: *body sizes per second*. Per joint, the people are summed and the series smoothed.

- ``vertical`` (default): the signed vertical velocity. World "up" is image "up" in every roughly
  level camera, so feet lifting and the body bobbing give the same sign in all views, unlike the
  horizontal motion, which depends on the viewing direction. Each joint's series is z-scored
  (ankles and the head weigh alike), then the joints are averaged. On walking people this
  correlates about twice as well across views as the speed magnitude.
- ``speed``: the 2D speed magnitude, averaged over joints (Pose2Sim's default; for cameras that
  are far from level, e.g. looking down from the ceiling).

One value per frame interval, at the interval's midpoint on the camera's own clock. Cameras of
one clock are averaged after z-scoring (:func:`clock_signal`). The *motion* of a signal is the
mean over joints of the standard deviation of the smoothed per-joint velocity (body sizes / s):
people standing still leave only keypoint noise, far below walking.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.triangulation.timeline import match_neighbours


@dataclass(frozen=True)
class MotionSignal:
    """A motion signal sampled on one clock.

    Attributes:
        times_s: (N,) times on the clock's own time base (frame / fps), seconds.
        values: (N,) speed, body sizes per second; NaN where nothing was matched.
        motion: standard deviation of the smoothed signal over time (body sizes / s): how much
            the motion varies, i.e. how much there is to correlate.
    """

    times_s: np.ndarray
    values: np.ndarray
    motion: float


def keypoint_speed(keypoints: np.ndarray, frame_index: np.ndarray, fps: float, score_threshold: float = 0.3,
                   smooth_s: float = 0.05, max_match_px: float = 100.0,
                   kind: Literal["vertical", "speed"] = "vertical") -> MotionSignal:
    """One camera's keypoint-motion signal (see the module doc).

    Args:
        keypoints: (T, P, J, 3) x, y (px), score.
        frame_index: (T,) frame numbers.
        fps: the camera's frame rate.
        score_threshold: joints scoring below this are ignored.
        smooth_s: Gaussian smoothing of the signal, seconds (sigma); 0 = none.
        max_match_px: detections moving farther than this between frames are not the same person.
        kind: ``vertical`` (signed vertical image velocity per joint, each joint z-scored, then
            averaged: the same sign in every roughly level camera) or ``speed`` (2D speed
            magnitude, mean over joints: view-independent direction, but weaker correlation).

    Returns:
        A :class:`MotionSignal` with N = T - 1 samples.
    """
    kp = np.asarray(keypoints, dtype=np.float64).copy()
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (T, P, J, 3); got {kp.shape}")
    if kind not in ("vertical", "speed"):
        raise ValueError(f"kind must be 'vertical' or 'speed'; got {kind!r}")
    frames = np.asarray(frame_index, dtype=np.float64)
    if frames.shape != kp.shape[:1]:
        raise ValueError(f"frame_index must have shape ({kp.shape[0]},); got {frames.shape}")
    T = kp.shape[0]
    if T < 3:
        return MotionSignal(np.zeros(0), np.zeros(0), 0.0)
    low = ~(kp[..., 2] >= score_threshold) | ~np.isfinite(kp[..., :2]).all(-1)
    kp[low] = np.nan
    matches = match_neighbours(kp, max_match_px)  # (T-1, P)
    nxt = kp[1:][np.arange(T - 1)[:, None], np.clip(matches, 0, None)]  # (T-1, P, J, 3)
    step = nxt[..., :2] - kp[:-1, ..., :2]  # (T-1, P, J, 2)
    step[matches < 0] = np.nan
    dt = (np.diff(frames) / fps)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: missing people stay NaN
        xy = kp[:-1, ..., :2]
        size = np.linalg.norm(np.nanmax(xy, axis=2) - np.nanmin(xy, axis=2), axis=-1)  # (T-1, P)
        size = np.where(size > 1.0, size, np.nan)[..., None]
        if kind == "vertical":
            vel = step[..., 1] / size / dt  # (T-1, P, J) body sizes / s, signed
        else:
            vel = np.linalg.norm(step, axis=-1) / size / dt
        seen = np.isfinite(vel).any(1)  # (T-1, J)
        per_joint = np.where(seen, np.nansum(np.where(np.isfinite(vel), vel, 0.0), axis=1), np.nan)
        per_joint = np.stack([_smooth(per_joint[:, j], fps, smooth_s) for j in range(per_joint.shape[1])], 1)
        spread = np.nanstd(per_joint, axis=0)  # (J,)
        usable = np.isfinite(spread) & (spread > 0) & (np.isfinite(per_joint).sum(0) > 2)
        motion = float(np.nanmean(spread[usable])) if usable.any() else 0.0
        if kind == "vertical":
            z = (per_joint[:, usable] - np.nanmean(per_joint[:, usable], 0)) / spread[usable]
            values = np.nanmean(z, axis=1) if usable.any() else np.full(T - 1, np.nan)
        else:
            values = np.nanmean(per_joint, axis=1)
    times = 0.5 * (frames[:-1] + frames[1:]) / fps
    return MotionSignal(times, values, motion)


def _smooth(values: np.ndarray, fps: float, smooth_s: float) -> np.ndarray:
    """Gaussian smoothing that ignores NaN (normalized convolution); NaN stays NaN."""
    if smooth_s <= 0 or values.size < 3:
        return values.copy()
    finite = np.isfinite(values)
    sigma = smooth_s * fps
    num = gaussian_filter1d(np.where(finite, values, 0.0), sigma, mode="nearest")
    den = gaussian_filter1d(finite.astype(np.float64), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~finite] = np.nan
    return out


def clock_signal(signals: list[MotionSignal]) -> MotionSignal:
    """Average the z-scored signals of the cameras of one clock (same frames) into one signal.

    The motion of the clock is the largest of its cameras' (one camera that sees the people well
    is enough to correlate).
    """
    if not signals:
        raise ValueError("clock_signal needs at least one camera signal")
    n = min(s.values.size for s in signals)
    times = signals[0].times_s[:n]
    stack = []
    for s in signals:
        v = s.values[:n]
        finite = np.isfinite(v)
        if finite.sum() < 3 or np.nanstd(v) == 0:
            continue
        stack.append((v - np.nanmean(v)) / np.nanstd(v))
    if not stack:
        return MotionSignal(times, np.full(n, np.nan), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: missing people stay NaN
        values = np.nanmean(np.stack(stack), axis=0)
    return MotionSignal(times, values, max(s.motion for s in signals))
