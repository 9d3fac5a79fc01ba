"""Atomic video stream writers.

A stream is written to a temporary file beside its destination and moved into place only when
the caller's ``ExitStack`` closes without an error, so a failed or killed run never leaves a
half-written video under a final name (see :func:`pipeline.artifacts.atomic_path`).

Codecs (``codec``):

- ``auto`` (default): ``FFV1`` when the frame's width and height are even, else ``png``; both
  are lossless.
- ``png``: every frame is a PNG image (lossless, any frame size) muxed into Matroska or
  AVI through OpenCV's raw-packet writer (``VIDEOWRITER_PROP_RAW_VIDEO``). Reads back through
  ``cv2.VideoCapture`` pixel for pixel, seekable, at about the speed and size of FFV1.
- ``jpeg``: the same with JPEG images (near-lossless at ``jpeg_quality`` 95, ~5x smaller).
- any other name is a FourCC encoded by OpenCV's FFmpeg writer, e.g. ``FFV1`` or ``HFYU``
  (lossless) or ``MJPG``. That writer silently drops the last column/row of a frame whose width
  or height is odd, and DVR tiles often are odd (a 1920-wide quad split into 959 + 2 + 959), so
  these codecs are refused for odd sizes with a message pointing to ``png``.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.errors import ConfigError, PosecapError

IMAGE_CODECS = ("png", "jpeg")


def resolve_codec(codec: str, size: tuple[int, int]) -> str:
    """The codec ``auto`` stands for at ``size = (width, height)``; other names unchanged."""
    if codec != "auto":
        return codec
    return "FFV1" if size[0] % 2 == 0 and size[1] % 2 == 0 else "png"


def fourcc_code(codec: str) -> int:
    """FourCC integer of a 1-4 character codec name (padded with spaces)."""
    if not 1 <= len(codec) <= 4 or not codec.isascii():
        raise ConfigError(f"codec {codec!r}: expected png, jpeg or a FourCC of 1-4 ASCII characters ('FFV1')")
    return cv2.VideoWriter_fourcc(*codec.ljust(4))


def check_codec(codec: str, size: tuple[int, int], where: str) -> None:
    """Raise if ``codec`` cannot store frames of ``size = (width, height)`` exactly."""
    codec = resolve_codec(codec, size)
    if codec in IMAGE_CODECS:
        return
    fourcc_code(codec)
    if size[0] % 2 or size[1] % 2:
        raise PosecapError(
            f"{where}: tile {size[0]}x{size[1]} has an odd side, which OpenCV's FFmpeg writer truncates "
            f"with codec {codec!r}; use codec png (lossless, any size) or jpeg"
        )


class StreamWriter:
    """Encode frames of one size into one file.

    Args:
        path: file to write (a temporary path; the caller moves it into place).
        codec: ``auto``, ``png``, ``jpeg`` or an FFmpeg FourCC such as ``FFV1`` (see the module
            docstring).
        fps: frame rate stored in the container.
        size: ``(width, height)`` of every frame.
        threaded: encode on a background thread (OpenCV releases the GIL while encoding), so
            several writers fed from one decoded frame encode in parallel. ``write`` then only
            queues the frame; the caller must not modify it afterwards.
        depth: frames queued per writer when threaded (bounds memory).
        jpeg_quality: quality of the ``jpeg`` codec, 1-100.
    """

    _END = object()

    def __init__(self, path: Path, codec: str, fps: float, size: tuple[int, int],
                 threaded: bool = False, depth: int = 8, jpeg_quality: int = 95) -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        codec = resolve_codec(codec, self.size)
        self.codec = codec
        check_codec(codec, self.size, self.path.name)
        self._image_ext: str | None = None
        self._image_params: list[int] = []
        if codec in IMAGE_CODECS:
            avi = self.path.suffix.lower() == ".avi"
            tag = ("MPNG" if avi else "png ") if codec == "png" else "MJPG"
            self._image_ext = ".png" if codec == "png" else ".jpg"
            self._image_params = ([cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                                   cv2.IMWRITE_PNG_STRATEGY_RLE] if codec == "png"
                                  else [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*tag),
                                           float(fps), self.size, [cv2.VIDEOWRITER_PROP_RAW_VIDEO, 1])
        else:
            self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, fourcc_code(codec), float(fps),
                                           self.size)
        if not self._writer.isOpened():
            self._writer.release()
            raise PosecapError(
                f"{self.path.name}: this OpenCV build cannot write codec {codec!r} into "
                f"'{self.path.suffix}' files; use codec auto or png with extension mkv"
            )
        self._error: BaseException | None = None
        self._queue: queue.Queue[object] | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=max(1, depth))
            self._thread = threading.Thread(target=self._run, name="posecap-encode", daemon=True)
            self._thread.start()

    def _encode(self, frame: np.ndarray) -> None:
        if self._image_ext is None:
            self._writer.write(frame)
            return
        ok, packet = cv2.imencode(self._image_ext, frame, self._image_params)
        if not ok:
            raise PosecapError(f"{self.path.name}: cannot encode a {frame.shape} frame as {self._image_ext}")
        self._writer.set(cv2.VIDEOWRITER_PROP_KEY_FLAG, 1)  # every image is a key frame (seekable)
        self._writer.write(packet)

    def _run(self) -> None:
        q = self._queue
        if q is None:
            return
        while True:
            item = q.get()
            if item is self._END:
                return
            if self._error is None:
                try:
                    self._encode(item)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self._error = exc

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(height, width, 3)`` uint8 frame (a view into a larger frame is fine)."""
        if frame.shape[1] != self.size[0] or frame.shape[0] != self.size[1]:
            raise ValueError(f"frame of shape {frame.shape} for a {self.size[0]}x{self.size[1]} stream")
        if self._error is not None:
            raise self._error
        if self._queue is not None:
            self._queue.put(frame)
        else:
            self._encode(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Flush queued frames and finish the file (safe to call twice)."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(self._END)
            self._thread.join()
            self._thread = None
        self._writer.release()
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def open_stream(stack: contextlib.ExitStack, dest: str | Path, codec: str, fps: float,
                size: tuple[int, int], threaded: bool = False, depth: int = 8,
                jpeg_quality: int = 95) -> StreamWriter:
    """Open a :class:`StreamWriter` whose file lands on ``dest`` when ``stack`` closes cleanly.

    The writer is closed before the move; on an exception the temporary file is deleted and
    ``dest`` is left as it was.
    """
    tmp = stack.enter_context(atomic_path(dest))
    writer = StreamWriter(tmp, codec, fps, size, threaded=threaded, depth=depth, jpeg_quality=jpeg_quality)
    stack.callback(writer.close)
    return writer


def copy_stream(stack: contextlib.ExitStack, src: str | Path, dest: str | Path) -> None:
    """Copy ``src`` to ``dest`` byte for byte (no re-encode); lands when ``stack`` closes cleanly."""
    tmp = stack.enter_context(atomic_path(dest))
    try:
        shutil.copyfile(src, tmp)
    except OSError as exc:
        raise PosecapError(f"{src}: cannot copy to {dest} ({exc.__class__.__name__}: {exc})") from None
