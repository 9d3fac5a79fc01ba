"""Recording layouts: a DVR-style 2×2 quad-split mosaic and a 1×2 side-by-side stereo frame.

A DVR writes one video whose frame is cut into tiles separated by thin black bars; tiles need not
be the same size (a pixel more or less when the frame does not divide evenly), and one tile
carries a burned-in timestamp. The layout is the exact ground truth ``mosaics.yaml`` records.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MosaicLayout:
    """Where each camera's image lies in a recorded frame.

    Attributes:
        frame_size: ``(width, height)`` of the recorded frame.
        grid: ``(rows, cols)``.
        cameras: camera names, row-major.
        rects: ``(x, y, w, h)`` per camera, row-major.
        timestamp_rect: ``(x, y, w, h)`` of the burned-in timestamp box in frame pixels, or None.
    """

    frame_size: tuple[int, int]
    grid: tuple[int, int]
    cameras: tuple[str, ...]
    rects: tuple[tuple[int, int, int, int], ...]
    timestamp_rect: tuple[int, int, int, int] | None = None

    def tile_size(self, camera: str) -> tuple[int, int]:
        x, y, w, h = self.rects[self.cameras.index(camera)]
        return w, h

    def to_mapping(self) -> dict:
        return {
            "frame_size": list(self.frame_size),
            "grid": list(self.grid),
            "cameras": list(self.cameras),
            "rects": [list(r) for r in self.rects],
            "timestamp_rect": None if self.timestamp_rect is None else list(self.timestamp_rect),
        }


def quad_layout(cameras: tuple[str, ...], tile: tuple[int, int], separator: int,
                odd_tiles: bool) -> MosaicLayout:
    """A 2×2 layout of nominal ``tile = (w, h)`` tiles with ``separator``-pixel black bars.

    With ``odd_tiles`` the right column is one pixel narrower and the bottom row one pixel
    taller, as DVRs do when the frame does not divide evenly into two tiles plus a bar (an odd
    ``separator`` then keeps the frame dimensions even).
    """
    w, h = tile
    col_w, row_h = ((w, w - 1), (h, h + 1)) if odd_tiles else ((w, w), (h, h))
    sep_x = sep_y = separator
    frame_w = col_w[0] + sep_x + col_w[1]
    frame_h = row_h[0] + sep_y + row_h[1]
    rects = []
    for r in range(2):
        for c in range(2):
            x = 0 if c == 0 else col_w[0] + sep_x
            y = 0 if r == 0 else row_h[0] + sep_y
            rects.append((x, y, col_w[c], row_h[r]))
    ts = (rects[0][0] + 4, rects[0][1] + 3, min(150, col_w[0] - 8), 14)
    return MosaicLayout((frame_w, frame_h), (2, 2), tuple(cameras), tuple(rects), ts)


def side_by_side_layout(cameras: tuple[str, ...], tile: tuple[int, int]) -> MosaicLayout:
    """A 1×2 layout with no gap: left lens then right lens."""
    w, h = tile
    return MosaicLayout((2 * w, h), (1, 2), tuple(cameras), ((0, 0, w, h), (w, 0, w, h)), None)


def compose(layout: MosaicLayout, tiles: dict[str, np.ndarray], timestamp: str | None = None) -> np.ndarray:
    """Assemble one recorded frame (uint8 BGR) from per-camera images (uint8 BGR, tile-sized)."""
    fw, fh = layout.frame_size
    frame = np.zeros((fh, fw, 3), np.uint8)
    for cam, (x, y, w, h) in zip(layout.cameras, layout.rects):
        img = tiles[cam]
        if img.shape[:2] != (h, w):
            raise ValueError(f"tile for {cam} is {img.shape[1]}x{img.shape[0]}; layout expects {w}x{h}")
        frame[y:y + h, x:x + w] = img
    if timestamp is not None and layout.timestamp_rect is not None:
        burn_timestamp(frame, layout.timestamp_rect, timestamp)
    return frame


def burn_timestamp(frame: np.ndarray, rect: tuple[int, int, int, int], text: str) -> None:
    """Draw a DVR overlay: a dark box with white text, clipped to ``rect``, in place."""
    x, y, w, h = rect
    roi = frame[y:y + h, x:x + w]
    roi[:] = (roi.astype(np.uint16) * 3 // 10).astype(np.uint8)
    cv2.putText(roi, text, (2, h - 4), cv2.FONT_HERSHEY_PLAIN, 0.75, (240, 240, 240), 1, cv2.LINE_AA)


def timestamp_text(start: _dt.datetime, frame_index: int, fps: float) -> str:
    """``YYYY-MM-DD hh:mm:ss.cc`` for frame ``frame_index`` of a recording started at ``start``."""
    t = start + _dt.timedelta(seconds=frame_index / fps)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 10000:02d}"


def split(frame: np.ndarray, layout: MosaicLayout) -> dict[str, np.ndarray]:
    """Cut a recorded frame into per-camera images by the layout's rects (views, not copies)."""
    return {cam: frame[y:y + h, x:x + w] for cam, (x, y, w, h) in zip(layout.cameras, layout.rects)}
