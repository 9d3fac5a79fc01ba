"""Put every clock of a capture take on the reference clock: override, estimate, or fall back.

Per clock other than the reference, in this order:

1. **Override.** An offset given in config (by clock or by camera name) wins; method ``config``.
2. **Motion check.** Too little motion in either clock (motion signal's standard deviation below
   ``min_motion``) gives a warning and the configured offset (session.yaml's ``time_offset_s``,
   i.e. the crop config's); method ``fallback``.
3. **Coarse.** Keypoint-speed cross-correlation (:mod:`.signals`, :mod:`.estimate`). A peak below
   ``min_correlation`` also falls back, with a warning. A side lobe close to the peak (confidence
   below ``min_confidence``) is reported as ambiguous.
4. **Refine.** Multi-view reprojection error over the offset (:mod:`.refine`) around the
   correlation's highest peaks; method ``correlation+reprojection``. Without rig cameras for both
   clocks the coarse offset stands; method ``correlation``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.sync.estimate import correlate
from pipeline.sync.io import Clock
from pipeline.sync.refine import CameraTrack, ReprojectionCost, refine_offset
from pipeline.sync.signals import MotionSignal, clock_signal, keypoint_speed


@dataclass(frozen=True)
class SyncOptions:
    """Settings of :func:`synchronize` (the sync stage's params)."""

    reference: str | None = None
    offsets_s: Mapping[str, float] = field(default_factory=dict)
    rates: Mapping[str, float] = field(default_factory=dict)
    score_threshold: float = 0.3
    signal: str = "vertical"
    max_offset_s: float = 10.0
    min_motion: float = 0.05
    min_correlation: float = 0.3
    min_confidence: float = 0.1
    candidates: int = 6
    refine: bool = True
    refine_window_frames: float = 2.0
    refine_max_frames: int = 200
    estimate_rate: bool = False
    max_rate_deviation: float = 0.01


@dataclass(frozen=True)
class ClockResult:
    """A clock's place on the reference clock, with the evidence for it."""

    clock: Clock
    offset_s: float
    rate: float
    method: str
    confidence: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cameras": list(self.clock.cameras),
            "source": self.clock.source,
            "fps": self.clock.fps,
            "offset_s": round(self.offset_s, 6),
            "offset_frames": round(self.offset_s * self.clock.fps, 4),
            "rate": round(self.rate, 8),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "method": self.method,
        }
        out.update(self.details)
        return out


def choose_reference(clocks: list[Clock], reference: str | None) -> Clock:
    """The clock named (or holding the camera named) ``reference``; default: the one with most cameras."""
    if reference is None:
        return max(clocks, key=lambda c: len(c.cameras))  # first of the largest
    for c in clocks:
        if reference == c.name or reference in c.cameras:
            return c
    names = ", ".join(c.name for c in clocks)
    raise ValueError(f"reference {reference!r} is neither a clock ({names}) nor one of their cameras")


def _override(table: Mapping[str, float], clock: Clock) -> tuple[float | None, str | None]:
    if clock.name in table:
        return float(table[clock.name]), clock.name
    for cam in clock.cameras:
        if cam in table:
            return float(table[cam]), cam
    return None, None


def synchronize(clocks: list[Clock], tracks: Mapping[str, CameraTrack], rig: Rig | None, options: SyncOptions,
                log: logging.Logger | None = None) -> tuple[Clock, list[ClockResult]]:
    """Estimate (or take from config) every clock's offset and rate on the reference clock.

    Args:
        clocks: the take's clocks (:func:`pipeline.sync.io.read_clocks`).
        tracks: camera -> its keypoints; cameras without keypoints are left out of the signals.
        rig: the calibrated rig for the refinement (None = coarse only).
        options: settings.

    Returns:
        (the reference clock, one result per clock, the reference first).
    """
    log = log or logging.getLogger("posecap")
    ref = choose_reference(clocks, options.reference)
    results = [ClockResult(ref, 0.0, 1.0, "reference", 1.0)]
    signals: dict[str, MotionSignal] = {}

    def signal(clock: Clock) -> MotionSignal | None:
        if clock.name not in signals:
            sigs = [keypoint_speed(tracks[c].keypoints, tracks[c].frame_index, tracks[c].fps,
                                   options.score_threshold, kind=options.signal)
                    for c in clock.cameras if c in tracks]
            signals[clock.name] = clock_signal(sigs) if sigs else MotionSignal(np.zeros(0), np.zeros(0), 0.0)
        return signals[clock.name]

    for clock in clocks:
        if clock is ref:
            continue
        configured = clock.configured_offset_s - ref.configured_offset_s
        rate_cfg, _ = _override(options.rates, clock)
        offset_cfg, key = _override(options.offsets_s, clock)
        if offset_cfg is not None:
            log.info("sync: %s: offset %.4f s (%.2f frames) from config (offsets_s.%s)", clock.name, offset_cfg,
                     offset_cfg * clock.fps, key)
            results.append(ClockResult(clock, offset_cfg, rate_cfg or 1.0, "config", None,
                                       {"config_key": f"offsets_s.{key}"}))
            continue
        results.append(_estimate(clock, ref, signal(ref), signal(clock), tracks, rig, options, configured,
                                 rate_cfg, log))
    return ref, results


def _fallback(clock: Clock, configured: float, rate: float | None, why: str, log: logging.Logger,
              details: dict[str, Any]) -> ClockResult:
    log.warning("sync: %s: %s; falling back to the configured offset %.4f s (session.yaml time_offset_s; "
                "set sync.offsets_s.%s to override)", clock.name, why, configured, clock.name)
    return ClockResult(clock, configured, rate or 1.0, "fallback", 0.0, {"warning": why, **details})


def _estimate(clock: Clock, ref: Clock, ref_sig: MotionSignal, sig: MotionSignal,
              tracks: Mapping[str, CameraTrack], rig: Rig | None, options: SyncOptions, configured: float,
              rate_cfg: float | None, log: logging.Logger) -> ClockResult:
    details: dict[str, Any] = {"motion": {ref.name: round(ref_sig.motion, 4), clock.name: round(sig.motion, 4)}}
    blind = [c.name for c in (ref, clock) if not any(cam in tracks for cam in c.cameras)]
    if blind:
        return _fallback(clock, configured, rate_cfg, f"no 2D keypoints for the cameras of {', '.join(blind)}",
                         log, details)
    low = [c.name for c, s in ((ref, ref_sig), (clock, sig)) if s.motion < options.min_motion]
    if low:
        why = (f"too little motion to synchronize in {', '.join(low)} (motion "
               f"{min(ref_sig.motion, sig.motion):.3f} < min_motion {options.min_motion})")
        return _fallback(clock, configured, rate_cfg, why, log, details)
    step = 1.0 / (2.0 * max(ref.fps, clock.fps))
    corr = correlate(ref_sig, sig, center_s=configured, max_offset_s=options.max_offset_s, step_s=step,
                     max_candidates=options.candidates)
    details.update({"correlation_peak": round(float(corr.peak), 4),
                    "side_lobe": None if not np.isfinite(corr.side_lobe) else round(float(corr.side_lobe), 4),
                    "side_lobe_lag_s": None if not np.isfinite(corr.side_lag_s) else round(corr.side_lag_s, 4),
                    "coarse_offset_s": None if not np.isfinite(corr.peak_lag_s) else round(corr.peak_lag_s, 5)})
    if not np.isfinite(corr.peak) or corr.peak < options.min_correlation or not corr.candidates_s:
        why = (f"motion signals do not correlate (peak {corr.peak:.2f} < min_correlation "
               f"{options.min_correlation})")
        return _fallback(clock, configured, rate_cfg, why, log, details)
    if corr.confidence < options.min_confidence:
        msg = (f"ambiguous correlation peak: side lobe at {corr.side_lag_s:+.3f} s reaches {corr.side_lobe:.2f} "
               f"of peak {corr.peak:.2f} (confidence {corr.confidence:.2f})")
        details["warning"] = msg
        log.warning("sync: %s: %s%s", clock.name, msg,
                    "; the reprojection error decides between the highest peaks" if options.refine and rig else "")
    offset, rate, method = corr.peak_lag_s, rate_cfg or 1.0, "correlation"
    cams_ref = [tracks[c] for c in ref.cameras if c in tracks and rig is not None and c in rig.names]
    cams_other = [tracks[c] for c in clock.cameras if c in tracks and rig is not None and c in rig.names]
    if options.refine and rig is not None and cams_ref and cams_other:
        cost = ReprojectionCost(rig, cams_ref, cams_other, options.score_threshold, options.refine_max_frames)
        found = refine_offset(cost, corr.candidates_s, clock.fps, window_frames=options.refine_window_frames,
                              estimate_rate=options.estimate_rate and rate_cfg is None,
                              max_rate_deviation=options.max_rate_deviation)
        if np.isfinite(found.cost_px):
            offset, method = found.offset_s, "correlation+reprojection"
            rate = found.rate if options.estimate_rate and rate_cfg is None else rate
            details.update({"reprojection_px": round(found.cost_px, 4),
                            "runner_up_reprojection_px": None if not np.isfinite(found.runner_up_px)
                            else round(found.runner_up_px, 4),
                            "geometric_confidence": round(1.0 - found.cost_px / found.runner_up_px, 4)
                            if np.isfinite(found.runner_up_px) and found.runner_up_px > 0 else 1.0,
                            "candidates_s": [round(c, 5) for c, _ in found.candidate_costs]})
    elif options.refine:
        log.warning("sync: %s: the rig lacks cameras of %s or %s; keeping the correlation's offset",
                    clock.name, ref.name, clock.name)
    log.info("sync: %s: offset %.4f s (%.2f frames at %g fps), rate %.6f, confidence %.2f, %s", clock.name,
             offset, offset * clock.fps, clock.fps, rate, corr.confidence, method)
    return ClockResult(clock, float(offset), float(rate), method, float(corr.confidence), details)
