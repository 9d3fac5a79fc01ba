"""Streaming frame readers for video files and image-sequence folders.

A reader yields ``(H, W, 3)`` uint8 BGR frames one at a time, so memory stays bounded whatever
the length. Opening checks what can be checked up front (missing, empty or unreadable file,
zero frames) and raises a one-line :class:`PosecapError`. A stream that breaks off part-way
(a decode error, or fewer frames than the container declares) ends the iteration early; the
reader's :attr:`FrameReader.broke_off` then says so and :attr:`FrameReader.frames_read` says
how many good frames came out.

Break-off detection for video files relies on the frame count in the container header, which
survives truncation in AVI and Matroska. When a file breaks off, the last frame the decoder
returned may be partly decoded (the AVI demuxer hands over a cut packet, and MJPEG, HuffYUV and
MPEG-4 decoders fill the missing part with grey), so it is withheld. The Matroska demuxer drops
cut blocks itself, so for ``.mkv``/``.webm`` that frame is kept.
"""

from __future__ import annotations

import abc
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PosecapError

log = logging.getLogger("posecap")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Containers whose demuxer discards a packet cut short by truncation (so the last frame is whole).
_WHOLE_PACKET_SUFFIXES = (".mkv", ".webm")


@dataclass(frozen=True)
class StreamInfo:
    """What a source declares before any frame is decoded.

    Attributes:
        width, height: frame size in pixels.
        fps: frames per second.
        declared_frames: frame count from the container (or the number of images), or None if
            the container does not say.
    """

    width: int
    height: int
    fps: float
    declared_frames: int | None


class FrameReader(abc.ABC):
    """Iterate over the frames of a video file or an image-sequence folder.

    Use :func:`open_frames` to build one. Iterate once; afterwards ``frames_read`` is the number
    of good frames yielded and ``broke_off`` tells whether the stream ended early.
    """

    def __init__(self, path: Path, info: StreamInfo) -> None:
        self.path = path
        self.info = info
        self.frames_read = 0
        self.broke_off = False
        self.break_reason = ""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield each good frame once, in order."""

    def close(self) -> None:  # noqa: B027 - image folders hold nothing open; videos override
        """Release the underlying decoder (safe to call twice)."""

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark_break(self, reason: str) -> None:
        self.broke_off = True
        self.break_reason = reason


class VideoFileReader(FrameReader):
    """Frames of a video file, decoded by OpenCV's FFmpeg backend."""

    def __init__(self, path: Path, cap: cv2.VideoCapture, info: StreamInfo, first: np.ndarray) -> None:
        super().__init__(path, info)
        self._cap = cap
        self._first: np.ndarray | None = first
        self._keep_cut_frame = path.suffix.lower() in _WHOLE_PACKET_SUFFIXES

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames(retrieve=True)  # type: ignore[return-value]

    def frames(self, retrieve: bool = True) -> Iterator[np.ndarray | None]:
        """Yield each good frame; with ``retrieve=False`` only decode and yield None (counting)."""
        if self._first is None:
            raise RuntimeError(f"{self.path}: a FrameReader can be iterated only once")
        held: np.ndarray | None = self._first
        shape = self._first.shape
        self._first = None
        declared = self.info.declared_frames
        while True:
            if retrieve:
                ok, frame = self._cap.read()
                ok = ok and frame is not None
            else:
                ok, frame = self._cap.grab(), None
            if not ok:
                decoded = self.frames_read + 1
                if declared is not None and decoded < declared:
                    self._mark_break(f"decoding stopped after {decoded} of {declared} frames")
                    if not self._keep_cut_frame:
                        return  # the held frame may be partly decoded: withhold it
                self.frames_read += 1
                yield held
                return
            if frame is not None and frame.shape != shape:
                self._mark_break(f"frame {self.frames_read + 1} has shape {frame.shape}, expected {shape}")
                self.frames_read += 1
                yield held
                return
            self.frames_read += 1
            yield held
            held = frame

    def close(self) -> None:
        self._cap.release()


class ImageFolderReader(FrameReader):
    """Frames of a folder of images, in natural name order (``f2.png`` before ``f10.png``)."""

    def __init__(self, path: Path, files: list[Path], info: StreamInfo) -> None:
        super().__init__(path, info)
        self._files = files

    def __iter__(self) -> Iterator[np.ndarray]:
        shape = None
        for f in self._files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                self._mark_break(f"{f.name} cannot be decoded")
                return
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                self._mark_break(f"{f.name} has shape {img.shape}, expected {shape}")
                return
            self.frames_read += 1
            yield img


def _natural_key(p: Path) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _open_image_folder(path: Path, fps: float | None) -> FrameReader:
    files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise PosecapError(
            f"{path}: image folder holds no frames ({', '.join(IMAGE_SUFFIXES)}); check the source path"
        )
    if fps is None or fps <= 0:
        raise PosecapError(f"{path}: an image-sequence folder needs 'fps' in its source config")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise PosecapError(f"{files[0]}: cannot decode the first image of the sequence; replace or remove it")
    h, w = first.shape[:2]
    return ImageFolderReader(path, files, StreamInfo(width=w, height=h, fps=float(fps),
                                                     declared_frames=len(files)))


def _open_video(path: Path, fps: float | None) -> FrameReader:
    if path.stat().st_size == 0:
        raise PosecapError(f"{path}: file is empty (0 bytes); re-copy the recording")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise PosecapError(f"{path}: not a video OpenCV can open (unknown format or damaged header); "
                           "check the file or convert it")
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise PosecapError(f"{path}: video has zero readable frames; check the recording")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    native_fps = float(cap.get(cv2.CAP_PROP_FPS))
    chosen = float(fps) if fps else native_fps
    if not chosen or chosen <= 0 or chosen != chosen:
        cap.release()
        raise PosecapError(f"{path}: container does not state a frame rate; set 'fps' in its source config")
    h, w = first.shape[:2]
    info = StreamInfo(width=w, height=h, fps=chosen, declared_frames=count if count > 0 else None)
    return VideoFileReader(path, cap, info, first)


def open_frames(path: str | Path, fps: float | None = None) -> FrameReader:
    """Open a video file or an image-sequence folder for streaming.

    Args:
        path: a video file (anything OpenCV's FFmpeg backend reads) or a folder of images.
        fps: frame rate; required for image folders, overrides the container's rate for videos.

    Raises:
        PosecapError: missing path, empty or unreadable file, zero frames, no fps for images.
    """
    p = Path(path)
    if not p.exists():
        raise PosecapError(f"{p}: source not found; check 'path' in the crop config")
    if p.is_dir():
        return _open_image_folder(p, fps)
    try:
        return _open_video(p, fps)
    except OSError as exc:
        raise PosecapError(f"{p}: cannot read ({exc.__class__.__name__}: {exc})") from None


def leading_frames(path: str | Path, count: int, fps: float | None = None) -> Iterator[np.ndarray]:
    """The first ``count`` frames of a source, one at a time (for tile detection).

    Reads sequentially rather than seeking: OpenCV's seek decodes forward from the previous key
    frame, which for long-GOP or FFV1 recordings costs far more than reading a few frames.
    """
    with open_frames(path, fps if fps else (1.0 if Path(path).is_dir() else None)) as reader:
        for i, frame in enumerate(reader):
            if i >= count:
                return
            yield frame


class Prefetcher:
    """Decode frames on a background thread, ``depth`` frames ahead of the consumer.

    OpenCV releases the GIL while decoding, so decode overlaps with whatever the consumer does
    (encoding). Memory is bounded by ``depth`` frames. Exceptions in the thread re-raise in the
    consumer.
    """

    _END = object()

    def __init__(self, frames: FrameReader, depth: int = 8) -> None:
        self._frames = frames
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="posecap-decode", daemon=True)
        self._started = False

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._put(exc)

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self._started:
            self._started = True
            self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            self.close()

    def close(self) -> None:
        """Stop the decode thread and wait for it."""
        self._stop.set()
        if self._started:
            self._thread.join()
