"""Tile geometry of mosaic videos: detection, size checks, margins and masks.

A DVR quad split (2x2) or a side-by-side stereo recording (1x2) packs several cameras into one
frame, separated by dark lines and usually framed by a dark border. Detection works on the
leading frames of the recording (read in sequence: seeking costs more than reading):

1. Per pixel, the brightest value over the frames and the colour channels (the temporal max).
   Scene content is bright in at least some frames; separators and borders never are.
2. A column is a *line* when at least ``line_fraction`` of its pixels are dark (<=
   ``dark_threshold``); rows likewise, counted only over the columns found to hold tiles, so a
   burned-in timestamp or a dark patch of scene only lowers a row's fraction a little. Pixels
   under a configured mask are ignored.
3. The runs of non-line columns (rows) are the tile columns (rows). When dark scene content
   splits a tile into several runs, the separators kept are the line runs nearest the even
   split of the content; when tiles abut with no separator, the content is split evenly.
4. Tile widths (heights) must agree within ``size_tolerance_px``.

Rectangles are ``(x, y, w, h)`` in mosaic pixels, row-major over the grid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PosecapError

log = logging.getLogger("posecap")

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class DetectOptions:
    """Thresholds of tile detection.

    Attributes:
        dark_threshold: brightest value (0-255) a separator/border pixel reaches in the sample.
        line_fraction: fraction of a row/column that must be dark for it to be a separator.
        size_tolerance_px: largest allowed spread of tile widths, and of tile heights.
    """

    dark_threshold: int = 40
    line_fraction: float = 0.6
    size_tolerance_px: int = 4


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _split_axis(is_line: np.ndarray, parts: int, axis_name: str, where: str,
                quiet: bool = False) -> list[tuple[int, int]]:
    """Split one axis into ``parts`` content intervals from a per-index line flag."""
    content = _runs(~is_line)
    if not content:
        raise PosecapError(
            f"{where}: every {axis_name} looks like a dark border; the frames are black or the "
            "separators are not dark. Give the tile rectangles as 'rects' in the crop config"
        )
    if len(content) == parts:
        return content
    start, end = content[0][0], content[-1][1]
    extent = end - start
    if len(content) > parts:
        # Dark scene content split a tile: keep the gaps nearest the even split.
        gaps = [(content[i][1], content[i + 1][0]) for i in range(len(content) - 1)]
        chosen: list[tuple[int, int]] = []
        for k in range(1, parts):
            target = start + extent * k / parts
            best = min(gaps, key=lambda g: abs((g[0] + g[1]) / 2 - target))
            if best in chosen:
                raise PosecapError(
                    f"{where}: cannot tell the {parts} tile {axis_name}s apart (separators ambiguous); "
                    "give the tile rectangles as 'rects' in the crop config"
                )
            chosen.append(best)
        chosen.sort()
        bounds = [start] + [v for g in chosen for v in g] + [end]
        return [(bounds[2 * i], bounds[2 * i + 1]) for i in range(parts)]
    # Fewer runs than parts: tiles abut without a separator (or a whole tile is black).
    if len(content) != 1:
        raise PosecapError(
            f"{where}: found {len(content)} tile {axis_name}s where the grid has {parts} "
            "(is a camera black?); give the tile rectangles as 'rects' in the crop config"
        )
    if not quiet:
        log.info("%s: no separator between tile %ss; splitting the picture evenly", where, axis_name)
    cuts = [start + round(extent * k / parts) for k in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


def temporal_max(frames: Iterable[np.ndarray]) -> np.ndarray:
    """``(H, W)`` uint8: brightest value of each pixel over frames and colour channels.

    ``frames`` may be a generator: only the running maximum is kept in memory.
    """
    out: np.ndarray | None = None
    for f in frames:
        if out is None:
            out = f.copy()
        else:
            np.maximum(out, f, out=out)
    if out is None:
        raise ValueError("temporal_max needs at least one frame")
    if out.ndim == 3:
        channels = [out[..., c] for c in range(out.shape[2])]
        out = channels[0].copy()
        for ch in channels[1:]:
            np.maximum(out, ch, out=out)
    return out


def mask_array(shape: tuple[int, int], mask: Sequence[Rect]) -> np.ndarray:
    """``(H, W)`` bool, True inside any of the ``(x, y, w, h)`` mask rectangles (clipped)."""
    h, w = shape
    m = np.zeros((h, w), dtype=bool)
    for x, y, rw, rh in mask:
        m[max(0, y):max(0, y + rh), max(0, x):max(0, x + rw)] = True
    return m


def detect_tiles(frames: Iterable[np.ndarray], grid: tuple[int, int], *, where: str = "mosaic",
                 options: DetectOptions = DetectOptions(), mask: Sequence[Rect] = ()) -> list[Rect]:
    """Find the tile rectangles of an R x C mosaic from a sample of its frames.

    Args:
        frames: ``(H, W, 3)`` or ``(H, W)`` uint8 frames of the recording (an iterable; only
            their running maximum is kept).
        grid: ``(rows, cols)``.
        where: name used in error messages (the source file).
        options: thresholds.
        mask: ``(x, y, w, h)`` rectangles (mosaic pixels) whose pixels are ignored, e.g. a
            burned-in timestamp lying across a border.

    Returns:
        ``rows * cols`` rectangles ``(x, y, w, h)``, row-major.

    Raises:
        PosecapError: the grid does not fit the frame, or the tiles disagree in size.
    """
    rows, cols = grid
    peak = temporal_max(frames)
    h, w = peak.shape
    check_grid_fits(grid, (w, h), where)
    dark = peak <= options.dark_threshold
    valid = ~mask_array((h, w), mask)

    def line_flags(axis: int, keep: np.ndarray) -> np.ndarray:
        # axis=0: per column, counted over rows in ``keep``; axis=1: per row, over columns in keep.
        if axis == 0:
            d, v = dark[keep, :], valid[keep, :]
        else:
            d, v = dark[:, keep].T, valid[:, keep].T
        n_valid = v.sum(axis=0)
        frac = (d & v).sum(axis=0) / np.maximum(n_valid, 1)
        return (frac >= options.line_fraction) | (n_valid == 0)

    all_rows = np.ones(h, dtype=bool)
    col_iv = _split_axis(line_flags(0, all_rows), cols, "column", where, quiet=True)
    in_cols = np.zeros(w, dtype=bool)
    for a, b in col_iv:
        in_cols[a:b] = True
    row_iv = _split_axis(line_flags(1, in_cols), rows, "row", where)
    in_rows = np.zeros(h, dtype=bool)
    for a, b in row_iv:
        in_rows[a:b] = True
    col_iv = _split_axis(line_flags(0, in_rows), cols, "column", where)  # again, without border rows
    rects = [(xa, ya, xb - xa, yb - ya) for ya, yb in row_iv for xa, xb in col_iv]
    check_tile_sizes(rects, options.size_tolerance_px, where)
    return rects


def check_grid_fits(grid: tuple[int, int], frame_size: tuple[int, int], where: str) -> None:
    """Raise if an R x C grid cannot fit a ``(width, height)`` frame (tiles under 8 px)."""
    rows, cols = grid
    w, h = frame_size
    if rows < 1 or cols < 1 or w < 8 * cols or h < 8 * rows:
        raise PosecapError(
            f"{where}: a {rows}x{cols} grid does not fit the {w}x{h} frame; check 'grid' in the crop config"
        )


def check_tile_sizes(rects: Sequence[Rect], tolerance_px: int, where: str) -> None:
    """Raise if tile widths, or tile heights, spread by more than ``tolerance_px`` pixels."""
    widths = [r[2] for r in rects]
    heights = [r[3] for r in rects]
    for name, sizes in (("widths", widths), ("heights", heights)):
        if max(sizes) - min(sizes) > tolerance_px:
            raise PosecapError(
                f"{where}: detected tile {name} {sizes} differ by more than {tolerance_px} px; "
                "check 'grid', or give the tile rectangles as 'rects' in the crop config"
            )


def check_rects_fit(rects: Sequence[Rect], frame_size: tuple[int, int], where: str) -> None:
    """Raise if any ``(x, y, w, h)`` rectangle is empty or reaches outside a ``(width, height)`` frame."""
    fw, fh = frame_size
    for i, (x, y, w, h) in enumerate(rects):
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > fw or y + h > fh:
            raise PosecapError(
                f"{where}: tile rectangle {i} [{x}, {y}, {w}, {h}] does not fit the {fw}x{fh} frame; "
                "fix 'rects' or 'margins' in the crop config"
            )


def apply_margins(rects: Sequence[Rect], margins: tuple[int, int, int, int]) -> list[Rect]:
    """Shrink each rectangle by ``margins`` = ``(top, right, bottom, left)`` pixels."""
    top, right, bottom, left = margins
    return [(x + left, y + top, w - left - right, h - top - bottom) for x, y, w, h in rects]
