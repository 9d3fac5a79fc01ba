"""Crop one source (a mosaic video, an image folder or a single-camera file) into camera streams.

Each mosaic is decoded once, on a background thread (tile detection uses the first frames of that
same pass), and every tile of a frame is handed to its own encoder thread, so decoding and the
encoders run in parallel. Memory is bounded by the queue depths and ``detect_frames``, whatever
the length. Frame n of every stream is the crop of frame
n of the mosaic: frames are never dropped or reordered, and a stream that breaks off ends all
its tiles at the same frame.

Every file is opened through :func:`pipeline.video.writer.open_stream` on the caller's
``ExitStack``, so nothing lands under its final name unless the whole stage succeeds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.errors import PosecapError
from pipeline.video.reader import FrameReader, Prefetcher, StreamInfo, VideoFileReader, open_frames
from pipeline.video.tiles import (
    DetectOptions,
    Rect,
    apply_margins,
    check_grid_fits,
    check_rects_fit,
    detect_tiles,
    mask_array,
)
from pipeline.video.writer import copy_stream, open_stream

log = logging.getLogger("posecap")


@dataclass(frozen=True)
class SourceJob:
    """One source to crop, resolved from config.

    Attributes:
        path: absolute path of the video file or image folder.
        label: the path as written in config (recorded in session.yaml and used in messages).
        grid: ``(rows, cols)``.
        cameras: camera name per tile, row-major.
        stems: camera -> absolute destination of its stream, without the extension.
        rects: ``(x, y, w, h)`` per tile, row-major, or None to detect.
        margins: ``(top, right, bottom, left)`` pixels trimmed from every tile.
        mask: ``(x, y, w, h)`` mosaic rectangles blacked out before cropping.
        fps: frame rate (required for image folders; overrides a video's own rate).
        time_offset_s: start of this source on the recording's common clock.
    """

    path: Path
    label: str
    grid: tuple[int, int]
    cameras: tuple[str, ...]
    stems: dict[str, Path]
    rects: tuple[Rect, ...] | None = None
    margins: tuple[int, int, int, int] = (0, 0, 0, 0)
    mask: tuple[Rect, ...] = ()
    fps: float | None = None
    time_offset_s: float = 0.0

    def dest(self, camera: str, extension: str) -> Path:
        """Stream file of ``camera``: the source's own suffix for a pass-through copy."""
        suffix = self.path.suffix.lower() if self.passthrough else "." + extension.lstrip(".")
        return self.stems[camera].with_name(self.stems[camera].name + suffix)

    @property
    def passthrough(self) -> bool:
        """A single-camera video with nothing to crop: copied byte for byte, not re-encoded."""
        return (self.grid == (1, 1) and self.rects is None and not any(self.margins) and not self.mask
                and self.path.is_file())


@dataclass(frozen=True)
class CropOptions:
    """How streams are written and tiles detected.

    Attributes:
        codec: ``auto``, ``png``, ``jpeg`` or an FFmpeg FourCC (see :mod:`pipeline.video.writer`).
        jpeg_quality: quality of the ``jpeg`` codec.
        extension: file extension (container) of encoded streams.
        detect: tile-detection thresholds.
        detect_frames: leading frames of each mosaic used for detection (buffered in memory).
        queue_frames: frames buffered between decoder and each encoder.
        show_progress: draw a progress bar per source.
    """

    codec: str = "auto"
    jpeg_quality: int = 95
    extension: str = "mkv"
    detect: DetectOptions = field(default_factory=DetectOptions)
    detect_frames: int = 24
    queue_frames: int = 8
    show_progress: bool = True


@dataclass(frozen=True)
class CameraResult:
    """What session.yaml records for one camera of one recording."""

    camera: str
    stream: Path
    source: str
    crop_rect: Rect
    image_size: tuple[int, int]
    fps: float
    frame_count: int
    time_offset_s: float
    truncated_at_frame: int | None


def _resolve_rects(job: SourceJob, info: StreamInfo, head: list[np.ndarray],
                   options: CropOptions) -> list[Rect]:
    """The crop rectangles of ``job``: from config, or detected on the buffered ``head`` frames."""
    where = str(job.path)
    size = (info.width, info.height)
    check_grid_fits(job.grid, size, where)
    n_tiles = job.grid[0] * job.grid[1]
    if job.rects is not None:
        if len(job.rects) != n_tiles:
            raise PosecapError(f"{where}: 'rects' lists {len(job.rects)} rectangles for a "
                               f"{job.grid[0]}x{job.grid[1]} grid; give one per tile, row-major")
        rects: list[Rect] = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in job.rects]
        check_rects_fit(rects, size, where)
    elif n_tiles == 1:
        rects = [(0, 0, info.width, info.height)]
    else:
        rects = detect_tiles(head, job.grid, where=where, options=options.detect, mask=job.mask)
    rects = apply_margins(rects, job.margins)
    check_rects_fit(rects, size, where)
    return rects


def _warn_break(job: SourceJob, reader: FrameReader) -> int | None:
    if not reader.broke_off:
        return None
    log.warning("%s: stream broke off (%s); kept the %d good frames before it",
                job.path, reader.break_reason, reader.frames_read)
    return reader.frames_read


def crop_source(stack: contextlib.ExitStack, job: SourceJob, options: CropOptions) -> list[CameraResult]:
    """Write one stream per camera of ``job``; files land when ``stack`` closes cleanly.

    Returns one :class:`CameraResult` per camera, in tile order.

    Raises:
        PosecapError: unreadable source, zero frames, grid or rects that do not fit.
    """
    if len(job.cameras) != job.grid[0] * job.grid[1]:
        raise PosecapError(f"{job.path}: {len(job.cameras)} camera names for a {job.grid[0]}x{job.grid[1]} "
                           "grid; name one camera per tile, row-major")
    if job.passthrough:
        return [_passthrough(stack, job, options)]
    with open_frames(job.path, job.fps) as reader:
        info = reader.info
        prefetch = Prefetcher(reader, options.queue_frames)
        try:
            stream = iter(prefetch)
            # Detection reads the leading frames of the same decode pass (no second decode); they
            # stay buffered until the writers are open: memory grows with detect_frames, not length.
            needs_detection = job.rects is None and len(job.cameras) > 1
            head = deque(itertools.islice(stream, options.detect_frames) if needs_detection else ())
            rects = _resolve_rects(job, info, list(head), options)
            writers = [
                open_stream(stack, job.dest(cam, options.extension), options.codec, info.fps, (w, h),
                            threaded=True, depth=options.queue_frames, jpeg_quality=options.jpeg_quality)
                for cam, (_, _, w, h) in zip(job.cameras, rects)
            ]
            masked = mask_array((info.height, info.width), job.mask) if job.mask else None
            views = [(slice(y, y + h), slice(x, x + w)) for x, y, w, h in rects]
            with tqdm(total=info.declared_frames, desc=job.label, unit="frame",
                      disable=not options.show_progress, leave=False) as bar:
                for frame in _drain_then(head, stream):
                    if masked is not None:
                        frame[masked] = 0
                    for writer, (ys, xs) in zip(writers, views):
                        writer.write(frame[ys, xs])
                    bar.update(1)
        finally:
            prefetch.close()
        for writer in writers:
            writer.close()
        truncated = _warn_break(job, reader)
    return [
        CameraResult(camera=cam, stream=job.dest(cam, options.extension), source=job.label, crop_rect=rect,
                     image_size=(rect[2], rect[3]), fps=info.fps, frame_count=reader.frames_read,
                     time_offset_s=job.time_offset_s, truncated_at_frame=truncated)
        for cam, rect in zip(job.cameras, rects)
    ]


def _drain_then(head: deque[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the buffered frames (releasing each), then the rest of the stream."""
    while head:
        yield head.popleft()
    yield from rest


def _passthrough(stack: contextlib.ExitStack, job: SourceJob, options: CropOptions) -> CameraResult:
    """Copy a single-camera video unchanged; decode it once (no colour conversion) to count frames."""
    cam = job.cameras[0]
    with open_frames(job.path, job.fps) as reader:
        info = reader.info
        bar = tqdm(total=info.declared_frames, desc=job.label, unit="frame",
                   disable=not options.show_progress, leave=False)
        try:
            frames = reader.frames(retrieve=False) if isinstance(reader, VideoFileReader) else iter(reader)
            for _ in frames:
                bar.update(1)
        finally:
            bar.close()
        truncated = _warn_break(job, reader)
    copy_stream(stack, job.path, job.dest(cam, options.extension))
    return CameraResult(camera=cam, stream=job.dest(cam, options.extension), source=job.label,
                        crop_rect=(0, 0, info.width, info.height), image_size=(info.width, info.height),
                        fps=info.fps, frame_count=reader.frames_read, time_offset_s=job.time_offset_s,
                        truncated_at_frame=truncated)
