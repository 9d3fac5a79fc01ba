"""Vectorized sub-pixel refinement: batched argmax, quarter offset and DARK (arXiv 1910.06278).

All functions work on M independent maps at once (M = N instances x K joints, flattened) and
never loop over maps. DARK blurs only the window it needs around each maximum: the blurred
value at a pixel depends on the ``kernel_size`` pixels around it, so the 3 x 3 (or 3) stencil
of the Taylor step needs a (kernel_size + 2)^2 window, gathered in one fancy-index call, and
the blur is two small batched matrix products.

Near the border DARK's zero-padded blur pulls the maximum inwards (0.08 px mean error over a
whole 64 x 48 map instead of 0.002 inside). Here the blur radius shrinks so its window stays
in the map, and an argmax on the border row gets a one-sided stencil; see
:func:`stencil_centre_and_radius`.

DARK also rescales the blurred map so its maximum equals the original one. That multiplies the
map by a constant, which adds a constant to its log and so leaves every derivative unchanged;
it is skipped here (the per-map loop in :mod:`pipeline.codecs._reference` keeps it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LOG_FLOOR = 1e-10
"""Values are clipped to this before the log, as DARK does."""


def gaussian_kernel1d(size: int) -> np.ndarray:
    """Normalized 1-D Gaussian of ``size`` taps (odd), sigma from OpenCV's rule for sigma <= 0.

    sigma = 0.3 * ((size - 1) / 2 - 1) + 0.8, so size 11 -> sigma 2.0. ``size`` 1 -> [1.0].

    Returns:
        (size,) float64 summing to 1.
    """
    if size == 1:
        return np.ones(1)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def argmax_1d(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each row.

    Args:
        rows: (M, L).

    Returns:
        index (M,) int64 (first maximum), value (M,) of rows' dtype.
    """
    index = np.argmax(rows, axis=-1)
    return index, np.take_along_axis(rows, index[:, None], axis=-1)[:, 0]


def argmax_2d(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Argmax of each map.

    Args:
        maps: (M, H, W).

    Returns:
        x (M,) int64, y (M,) int64, value (M,); the first maximum in row-major order.
    """
    m, h, w = maps.shape
    index, value = argmax_1d(maps.reshape(m, h * w))
    return index % w, index // w, value


def windows_1d(rows: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    """Window of 2 * half + 1 values around ``centre`` in each row, zero outside the row.

    Args:
        rows: (M, L); centre: (M,) int.

    Returns:
        (M, 2 * half + 1) float64.
    """
    length = rows.shape[1]
    pos = centre[:, None] + np.arange(-half, half + 1)
    inside = (pos >= 0) & (pos < length)
    vals = np.take_along_axis(rows, np.clip(pos, 0, length - 1), axis=1).astype(np.float64)
    return np.where(inside, vals, 0.0)


def windows_2d(
    maps: np.ndarray, x: np.ndarray, y: np.ndarray, half: int, map_index: np.ndarray | None = None
) -> np.ndarray:
    """Square window of side 2 * half + 1 around (x, y) in each map, zero outside the map.

    Args:
        maps: (M, H, W), or (B, H, W) with ``map_index``.
        x, y: (M,) int.
        map_index: (M,) int, which of the B maps each window reads; default arange(M).

    Returns:
        (M, P, P) float64 with P = 2 * half + 1, indexed [row (y), column (x)].
    """
    _, h, w = maps.shape
    base = (np.arange(x.size) if map_index is None else map_index) * (h * w)
    off = np.arange(-half, half + 1)
    ys = y[:, None] + off
    xs = x[:, None] + off
    flat_maps = np.ascontiguousarray(maps).reshape(-1)
    if x.size and x.min() >= half and y.min() >= half and x.max() < w - half and y.max() < h - half:
        flat = (base[:, None] + ys * w)[:, :, None] + xs[:, None, :]  # all windows inside: no mask
        return np.take(flat_maps, flat).astype(np.float64)
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    flat = (base[:, None] + np.clip(ys, 0, h - 1) * w)[:, :, None] + np.clip(xs, 0, w - 1)[:, None, :]
    return np.where(inside, np.take(flat_maps, flat).astype(np.float64), 0.0)


@lru_cache(maxsize=32)
def _band_bank(kernel_size: int) -> np.ndarray:
    """Blur band matrices for every radius up to kernel_size // 2, read-only.

    Returns:
        (r + 1, 2 r + 3, 3) float64 with r = kernel_size // 2: ``window @ bank[i]`` blurs a
        (2 r + 3)-window centred on a stencil with the (2 i + 1)-tap kernel and keeps the 3
        stencil values. Every output is a dot product over the same taps in the same order,
        so batched and one-by-one results are identical.
    """
    r = kernel_size // 2
    bank = np.zeros((r + 1, 2 * r + 3, 3))
    for i in range(r + 1):
        kernel = gaussian_kernel1d(2 * i + 1)
        for j in range(3):
            bank[i, j + r - i : j + r + i + 1, j] = kernel
    bank.flags.writeable = False
    return bank


def stencil_centre_and_radius(index: np.ndarray, length: int, kernel_size: int) -> tuple[np.ndarray, ...]:
    """Where DARK's 3-point stencil sits and how far its blur may reach, per point.

    The stencil centre is the argmax moved inside [1, length - 2] (a one-sided stencil at
    the border; the log of a Gaussian is quadratic, so any 3 points give its maximum). The
    blur radius shrinks near the border so that its window never leaves the map: there a
    zero-padded blur would pull the maximum inwards.

    Returns:
        centre (M,) int64 and radius (M,) int64 in [0, kernel_size // 2].
    """
    centre = np.clip(index, 1, max(length - 2, 1))
    radius = np.clip(np.minimum(centre - 1, length - 2 - centre), 0, kernel_size // 2)
    return centre, radius


def _finish(index: np.ndarray, centre: np.ndarray, step: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Offset from the argmax: (centre - index) + step where ok, else 0; clipped to +-1 px."""
    return np.where(ok, np.clip(centre - index + step, -1.0, 1.0), 0.0)


def dark_offsets_1d(rows: np.ndarray, index: np.ndarray, kernel_size: int) -> np.ndarray:
    """1-D DARK: Newton step on the log of the blurred row at its argmax.

    offset = -f'/f'' with central differences of f = log(max(blur(row), 1e-10)) on the 3-point
    stencil of :func:`stencil_centre_and_radius`. Applied where f'' < 0 (a maximum) and the
    row has >= 3 values, else 0; the result is kept within 1 bin of the argmax.

    Args:
        rows: (M, L); index: (M,) argmax of each row; kernel_size: odd blur taps.

    Returns:
        (M,) float64 offsets in bins, to add to ``index``.
    """
    length = rows.shape[1]
    centre, radius = stencil_centre_and_radius(index, length, kernel_size)
    bank = _band_bank(kernel_size)
    win = windows_1d(rows, centre, kernel_size // 2 + 1)  # (M, P)
    blurred = (win[:, None, :] @ bank[radius])[:, 0, :]  # (M, 3)
    f = np.log(np.maximum(blurred, LOG_FLOOR))
    d1 = 0.5 * (f[:, 2] - f[:, 0])
    d2 = f[:, 2] - 2.0 * f[:, 1] + f[:, 0]
    ok = (d2 < 0) & (length >= 3)
    return _finish(index, centre, -d1 / np.where(ok, d2, -1.0), ok)


def dark_offsets_2d(maps: np.ndarray, x: np.ndarray, y: np.ndarray, kernel_size: int) -> np.ndarray:
    """2-D DARK: Newton step -H^-1 g on the log of the blurred map at its argmax.

    g and H are central differences of f = log(max(blur(map), 1e-10)) on the 3 x 3 stencil
    of :func:`stencil_centre_and_radius` (per axis). Applied where H is negative definite
    (det > 0 and f_xx < 0, a maximum) and the map is at least 3 x 3, else 0; the result is
    kept within 1 px of the argmax on each axis.

    Args:
        maps: (M, H, W); x, y: (M,) int argmax; kernel_size: odd blur taps.

    Returns:
        (M, 2) float64 offsets (dx, dy) in map pixels.
    """
    _, h, w = maps.shape
    cx, rx = stencil_centre_and_radius(x, w, kernel_size)
    cy, ry = stencil_centre_and_radius(y, h, kernel_size)
    bank = _band_bank(kernel_size)
    win = windows_2d(maps, cx, cy, kernel_size // 2 + 1)  # (M, P rows y, P cols x)
    blurred = np.swapaxes(win @ bank[rx], 1, 2) @ bank[ry]  # blur along x, then y: (M, 3x, 3y)
    f = np.log(np.maximum(blurred, LOG_FLOOR))  # f[:, ix, iy]
    dx = 0.5 * (f[:, 2, 1] - f[:, 0, 1])
    dy = 0.5 * (f[:, 1, 2] - f[:, 1, 0])
    dxx = f[:, 2, 1] - 2.0 * f[:, 1, 1] + f[:, 0, 1]
    dyy = f[:, 1, 2] - 2.0 * f[:, 1, 1] + f[:, 1, 0]
    dxy = 0.25 * (f[:, 2, 2] - f[:, 2, 0] - f[:, 0, 2] + f[:, 0, 0])
    det = dxx * dyy - dxy * dxy
    ok = (det > 0) & (dxx < 0) & (w >= 3) & (h >= 3)
    safe = np.where(ok, det, 1.0)
    ox = _finish(x, cx, -(dyy * dx - dxy * dy) / safe, ok)
    oy = _finish(y, cy, -(dxx * dy - dxy * dx) / safe, ok)
    return np.stack([ox, oy], axis=1)


def quarter_offsets_2d(
    maps: np.ndarray, x: np.ndarray, y: np.ndarray, map_index: np.ndarray | None = None
) -> np.ndarray:
    """Quarter-pixel shift towards the higher neighbour, per axis (SimpleBaseline, HigherHRNet).

    offset_x = 0.25 * sign(map[y, x + 1] - map[y, x - 1]) where 1 <= x <= W - 2, else 0; the
    same for y.

    Args:
        maps: (M, H, W), or (B, H, W) with ``map_index``; x, y: (M,) int.
        map_index: (M,) int, which of the B maps each point is on; default arange(M).

    Returns:
        (M, 2) float64 offsets (dx, dy) in map pixels.
    """
    _, h, w = maps.shape
    win = windows_2d(maps, x, y, 1, map_index)  # [:, row, col]
    ox = 0.25 * np.sign(win[:, 1, 2] - win[:, 1, 0]) * ((x >= 1) & (x <= w - 2))
    oy = 0.25 * np.sign(win[:, 2, 1] - win[:, 0, 1]) * ((y >= 1) & (y <= h - 2))
    return np.stack([ox, oy], axis=1)
