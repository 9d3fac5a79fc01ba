"""Drawing primitives shared by the overlays, the mosaic and the reports: colours, skeletons,
labels, tiling, and an atomic MP4 writer.

Images are OpenCV BGR ``uint8`` arrays ``(H, W, 3)``; points are pixel coordinates as OpenCV
(x right, y down, integer values at pixel centres). Lines are drawn anti-aliased with 4 bits of
sub-pixel precision, so a joint lands where it projects, not on the nearest integer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.errors import PosecapError

# Identity colours (Tableau 10), RGB 0-255; person p gets PALETTE[p % 10].
PALETTE_RGB = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
], dtype=np.uint8)
UNMATCHED_BGR = (200, 200, 200)
NEUTRAL_BGR = (64, 64, 64)
SHIFT = 4
_ONE = 1 << SHIFT
_LIMIT = 32000 / _ONE  # keep fixed-point coordinates inside int16-safe range


def person_rgb(p: int) -> tuple[int, int, int]:
    """Identity colour of person slot ``p``, RGB 0-255."""
    c = PALETTE_RGB[int(p) % len(PALETTE_RGB)]
    return int(c[0]), int(c[1]), int(c[2])


def person_bgr(p: int) -> tuple[int, int, int]:
    """Identity colour of person slot ``p``, BGR 0-255 (for OpenCV)."""
    r, g, b = person_rgb(p)
    return b, g, r


def tint(bgr: tuple[int, int, int], amount: float = 0.5) -> tuple[int, int, int]:
    """Blend a colour towards white by ``amount`` in [0, 1]."""
    return tuple(int(round(c + (255 - c) * amount)) for c in bgr)  # type: ignore[return-value]


def _fixed(pt: np.ndarray) -> tuple[int, int]:
    x, y = np.clip(pt, -_LIMIT, _LIMIT)
    return int(round(x * _ONE)), int(round(y * _ONE))


def draw_skeleton(img: np.ndarray, uv: np.ndarray, limbs: Sequence[tuple[int, int]], color: tuple[int, int, int],
                  thickness: int = 2, radius: float = 3.0, filled: bool = True) -> None:
    """Draw one skeleton in place: limbs between finite joints, a dot on every finite joint.

    Args:
        img: (H, W, 3) uint8 BGR.
        uv: (J, 2) pixel positions, NaN where absent.
        limbs: joint index pairs to connect.
        color: BGR.
        thickness: line thickness, px.
        radius: joint dot radius, px.
        filled: filled dots (else rings).
    """
    ok = np.isfinite(uv).all(axis=1)
    for a, b in limbs:
        if ok[a] and ok[b]:
            cv2.line(img, _fixed(uv[a]), _fixed(uv[b]), color, thickness, cv2.LINE_AA, SHIFT)
    r = max(1, int(round(radius * _ONE)))
    for j in np.flatnonzero(ok):
        cv2.circle(img, _fixed(uv[j]), r, color, -1 if filled else max(1, thickness // 2), cv2.LINE_AA, SHIFT)


def draw_residuals(img: np.ndarray, uv_a: np.ndarray, uv_b: np.ndarray, color: tuple[int, int, int]) -> None:
    """Thin lines joining ``uv_a[j]`` to ``uv_b[j]`` (J, 2) where both are finite (detected -> reprojected)."""
    ok = np.isfinite(uv_a).all(axis=1) & np.isfinite(uv_b).all(axis=1)
    for j in np.flatnonzero(ok):
        cv2.line(img, _fixed(uv_a[j]), _fixed(uv_b[j]), color, 1, cv2.LINE_AA, SHIFT)


def text_scale(width: int) -> float:
    """Font scale that reads well on an image ``width`` pixels wide."""
    return float(np.clip(width / 1100.0, 0.35, 1.2))


def put_label(img: np.ndarray, text: str, org: tuple[float, float], color: tuple[int, int, int],
              scale: float | None = None, bg: tuple[int, int, int] | None = (0, 0, 0)) -> None:
    """Text with its baseline-left corner at ``org``, on a filled box for contrast, kept inside the image."""
    h, w = img.shape[:2]
    scale = text_scale(w) if scale is None else scale
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = int(np.clip(org[0], 0, max(0, w - tw - 2)))
    y = int(np.clip(org[1], th + 2, h - base - 1))
    if bg is not None:
        cv2.rectangle(img, (x - 2, y - th - 2), (x + tw + 2, y + base), bg, -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def header_bar(img: np.ndarray, text: str) -> None:
    """A dark strip across the top of ``img`` with ``text`` in white."""
    h, w = img.shape[:2]
    scale = text_scale(w)
    (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    bar = th + base + 8
    img[:bar] = (img[:bar].astype(np.uint16) * 2 // 5).astype(np.uint8)
    put_label(img, text, (6, th + 4), (255, 255, 255), scale, bg=None)


def neutral_frame(size: tuple[int, int]) -> np.ndarray:
    """A dark grey frame of ``size`` = (width, height)."""
    w, h = size
    return np.full((h, w, 3), NEUTRAL_BGR, dtype=np.uint8)


def pad_even(img: np.ndarray) -> np.ndarray:
    """Pad the right/bottom edge by one black pixel where width/height is odd (MPEG-4 needs even sizes)."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def fit_size(size: tuple[int, int], max_width: int) -> tuple[int, int]:
    """Scale ``(w, h)`` down to at most ``max_width`` wide, keeping the aspect ratio."""
    w, h = size
    if w <= max_width:
        return w, h
    s = max_width / w
    return max_width, max(1, int(round(h * s)))


def letterbox(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``img`` to fit ``size`` (w, h) keeping its aspect ratio; pad the rest black."""
    tw, th = size
    h, w = img.shape[:2]
    if (w, h) == (tw, th):
        return img
    s = min(tw / w, th / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((th, tw, 3), dtype=np.uint8)
    x0, y0 = (tw - nw) // 2, (th - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def tile_grid(images: Sequence[np.ndarray], tile_size: tuple[int, int], cols: int,
              labels: Sequence[str] | None = None) -> np.ndarray:
    """Fit every image into ``tile_size`` (w, h) (:func:`letterbox`) and lay them out row-major in ``cols`` columns."""
    tw, th = tile_size
    rows = max(1, -(-len(images) // cols))
    out = np.zeros((rows * th, cols * tw, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        tile = letterbox(im, (tw, th))
        out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
        if labels is not None:
            put_label(out, labels[i], (c * tw + 4, (r + 1) * th - 6), (255, 255, 255), text_scale(tw))
    return out


def grid_columns(n: int) -> int:
    """Columns of a near-square grid for ``n`` tiles."""
    return max(1, int(np.ceil(np.sqrt(n))))


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise PosecapError(f"{path}: could not write the PNG image")


class VideoSink:
    """An MP4 (MPEG-4 Part 2, FourCC ``mp4v``) written to a temporary file and moved into place on close.

    Frames may have any size; they are padded to even width/height and must all have the size of
    the first frame. Use as a context manager inside an ``ExitStack`` for several at once.
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._ctx: contextlib.AbstractContextManager | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> VideoSink:
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = pad_even(frame)
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                raise PosecapError(f"{self.path}: OpenCV cannot write MPEG-4 (mp4v) video here; "
                                   "check that opencv-python-headless is installed with its FFmpeg backend")
            self._size = size
        elif size != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if self._writer is not None:
            self._writer.release()
        ctx = self._ctx
        if ctx is None:
            return None
        if exc_type is None and self.frames == 0:
            err = PosecapError(f"{self.path}: no frames to write")
            ctx.__exit__(PosecapError, err, None)  # removes the temporary file
            raise err
        return ctx.__exit__(exc_type, exc, tb)


@contextlib.contextmanager
def video_sinks(paths: Sequence[Path], fps: float) -> Iterator[list[VideoSink]]:
    """Open several :class:`VideoSink` at once; all are moved into place only if the block succeeds."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(VideoSink(p, fps)) for p in paths]
