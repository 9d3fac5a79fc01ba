"""Coarse offset: cross-correlate two clocks' motion signals over a range of lags.

For a lag ``L`` the correlation is Pearson's r between the reference signal at ``tau + L`` and the
other clock's signal at ``tau`` (its own time base), over the samples both cover; the reference
is linearly interpolated, so lags need not be whole frames and the two clocks may run at
different frame rates. If the other clock's frame 0 is at reference time ``offset_s``, the peak is
at ``L = offset_s``. The peak is located to sub-step precision by a parabola through its three
samples.

Confidence compares the peak with the side lobes: the highest correlation outside the main lobe
(the run of lags around the peak down to the first local minimum on each side).
``confidence = 1 - max(side, 0) / peak``: 1 for a lone peak, 0 when a side lobe is as high.
Periodic motion (walking) makes side lobes at the step period; the refinement
(:mod:`pipeline.sync.refine`) then decides between the highest peaks by reprojection error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.sync.signals import MotionSignal


@dataclass(frozen=True)
class Correlation:
    """The correlation curve of two clocks and its peaks.

    Attributes:
        lags_s: (L,) lags tried, seconds.
        values: (L,) Pearson r per lag; NaN where the overlap was too short.
        peak_lag_s: lag of the highest peak (sub-step), seconds; NaN if none.
        peak: the highest correlation.
        side_lobe: the highest correlation outside the main lobe (NaN if none).
        side_lag_s: where that side lobe is.
        confidence: ``1 - max(side_lobe, 0) / peak``, in [0, 1].
        candidates_s: lags of the local maxima, highest first (sub-step), at most ``max_candidates``.
    """

    lags_s: np.ndarray
    values: np.ndarray
    peak_lag_s: float
    peak: float
    side_lobe: float
    side_lag_s: float
    confidence: float
    candidates_s: tuple[float, ...]

    @property
    def peak_ratio(self) -> float:
        """Peak over side lobe (inf when there is no positive side lobe)."""
        if not np.isfinite(self.side_lobe) or self.side_lobe <= 0:
            return float("inf")
        return float(self.peak / self.side_lobe)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else np.nan


def _parabola(values: np.ndarray, i: int) -> float:
    """Sub-sample offset of a peak at index ``i`` (in samples, within [-0.5, 0.5])."""
    if i <= 0 or i >= values.size - 1 or not np.isfinite(values[i - 1:i + 2]).all():
        return 0.0
    y0, y1, y2 = values[i - 1:i + 2]
    den = y0 - 2 * y1 + y2
    return float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0


def correlate(reference: MotionSignal, other: MotionSignal, center_s: float = 0.0, max_offset_s: float = 10.0,
              step_s: float = 1 / 60, min_overlap_s: float = 2.0, min_overlap_fraction: float = 0.5,
              max_candidates: int = 5, min_separation_s: float = 0.1) -> Correlation:
    """Correlate ``other`` against ``reference`` for lags in ``center_s +- max_offset_s``.

    Args:
        reference: the reference clock's signal.
        other: the other clock's signal (times on its own clock).
        center_s: the lag to search around (the configured offset), seconds.
        max_offset_s: half-width of the search, seconds.
        step_s: lag step, seconds.
        min_overlap_s: lags where the signals share less than this are skipped.
        min_overlap_fraction: ... or less than this fraction of the shorter signal (short overlaps
            correlate well by chance).
        max_candidates: how many local maxima to return.
        min_separation_s: a local maximum this close to a higher one is not another candidate.
    """
    ref_t, ref_v = reference.times_s, reference.values
    ok_ref = np.isfinite(ref_v)
    lags = center_s + np.arange(-max_offset_s, max_offset_s + step_s / 2, step_s)
    values = np.full(lags.size, np.nan)
    if ok_ref.sum() >= 3 and np.isfinite(other.values).sum() >= 3:
        rt, rv = ref_t[ok_ref], ref_v[ok_ref]
        ok_o = np.isfinite(other.values)
        ot, ov = other.times_s[ok_o], other.values[ok_o]
        dt_o = np.median(np.diff(other.times_s)) if other.times_s.size > 1 else step_s
        shorter = min(rt[-1] - rt[0], ot[-1] - ot[0])
        need = max(min_overlap_s, min_overlap_fraction * shorter)
        for i, lag in enumerate(lags):
            t = ot + lag
            inside = (t >= rt[0]) & (t <= rt[-1])
            if inside.sum() * dt_o < need or inside.sum() < 3:
                continue
            values[i] = _pearson(np.interp(t[inside], rt, rv), ov[inside])
    return _peaks(lags, values, step_s, max_candidates, min_separation_s)


def _peaks(lags: np.ndarray, values: np.ndarray, step_s: float, max_candidates: int,
           min_separation_s: float) -> Correlation:
    finite = np.isfinite(values)
    if not finite.any():
        return Correlation(lags, values, np.nan, np.nan, np.nan, np.nan, 0.0, ())
    v = np.where(finite, values, -np.inf)
    interior = (v[1:-1] >= v[:-2]) & (v[1:-1] >= v[2:])
    maxima = list(np.flatnonzero(interior) + 1)
    for edge in (0, v.size - 1):
        if finite[edge] and edge not in maxima:
            maxima.append(edge)
    maxima.sort(key=lambda i: -v[i])
    best = maxima[0]
    lo = best
    while lo > 0 and finite[lo - 1] and v[lo - 1] <= v[lo]:
        lo -= 1
    hi = best
    while hi < v.size - 1 and finite[hi + 1] and v[hi + 1] <= v[hi]:
        hi += 1
    outside = np.ones(v.size, bool)
    outside[lo:hi + 1] = False
    outside &= finite
    side = float(v[outside].max()) if outside.any() else np.nan
    side_lag = float(lags[outside][np.argmax(v[outside])]) if outside.any() else np.nan
    peak = float(v[best])
    confidence = float(np.clip(1.0 - max(side, 0.0) / peak, 0.0, 1.0)) if peak > 0 and np.isfinite(side) else (
        1.0 if peak > 0 else 0.0)
    kept: list[int] = []
    for i in maxima:
        if v[i] > 0 and all(abs(lags[i] - lags[j]) >= min_separation_s for j in kept):
            kept.append(i)
        if len(kept) == max_candidates:
            break
    cands = tuple(float(lags[i] + _parabola(values, i) * step_s) for i in kept)
    peak_lag = cands[0] if cands else float(lags[best])
    return Correlation(lags, values, peak_lag, peak, side, side_lag, confidence, cands)
