"""Streaming, chunk-checkpointed 2D pose over every camera of a session.

For each camera the frames are decoded on a background thread (:class:`~pipeline.video.reader.Prefetcher`,
``queue_frames`` ahead, so memory is bounded), handed to the backend ``batch_frames`` at a
time, and the detections saved every ``chunk_frames`` frames as a chunk checkpoint
(:class:`~pipeline.pose2d.io.ChunkStore`). The keypoints stay in those files: a camera's result
lists its chunks (:class:`~pipeline.pose2d.io.ChunkInfo`: file, frames, person slots, detection
counts), so memory does not grow with the take. A run that is killed resumes at the first frame no
chunk holds: the decoded frames before it are skipped, and the backend's tracker state is set
from the last saved frame, so the result equals an uninterrupted run's. Progress bars show the
total and the current camera in frames/s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.pose2d.io import ChunkInfo, ChunkStore, DetectionCounts, last_frame, stack_frames
from pipeline.video.reader import Prefetcher, open_frames

__all__ = ["CameraJob", "CameraResult", "RunOptions", "run_camera", "run_cameras"]

log = logging.getLogger("posecap")


@dataclass(frozen=True)
class CameraJob:
    """One camera's stream, or the frame range ``start .. stop - 1`` of it (one parallel task).

    A range that starts after frame 0 starts with a fresh box tracker (as the stream's start does).
    """

    name: str
    stream: Path
    frames: int  # frames the session declares: the frames read (0 = the whole stream)
    fps: float | None = None
    start: int = 0
    stop: int | None = None  # None = ``frames`` (or the stream's end)


@dataclass(frozen=True)
class RunOptions:
    """Batching, checkpointing and progress settings."""

    batch_frames: int = 8
    chunk_frames: int = 64
    queue_frames: int = 16
    show_progress: bool = True

    def __post_init__(self) -> None:
        if min(self.batch_frames, self.chunk_frames, self.queue_frames) < 1:
            raise ValueError("batch_frames, chunk_frames and queue_frames must be >= 1")
        if self.chunk_frames % self.batch_frames:
            raise ValueError(f"chunk_frames ({self.chunk_frames}) must be a multiple of batch_frames "
                             f"({self.batch_frames}) so a resumed run batches frames as an uninterrupted one")


@dataclass(frozen=True)
class CameraResult:
    """One camera's (or frame range's) saved chunks, in frame order, and what they cost.

    The keypoints are not held: they are the chunks' files, (frames, people, J, 3) once merged
    (:func:`~pipeline.pose2d.io.frame_blocks` pads each chunk to ``people``).
    """

    name: str
    chunks: tuple[ChunkInfo, ...]
    frames_decoded: int
    frames_computed: int
    seconds: float
    resumed_at: int

    @property
    def frames(self) -> int:
        """Frames the chunks hold."""
        return sum(c.frames for c in self.chunks)

    @property
    def people(self) -> int:
        """Person slots of the merged keypoints: the most of any chunk (0 without chunks)."""
        return max((c.people for c in self.chunks), default=0)

    @property
    def counts(self) -> DetectionCounts:
        """Detection counts over every chunk."""
        return sum((c.counts for c in self.chunks), DetectionCounts())

    @property
    def detections(self) -> int:
        return self.counts.detections

    @property
    def frames_with_detections(self) -> int:
        return self.counts.frames_with_detections


def _window(frames: Any, start: int, stop: int | None) -> Iterator[np.ndarray]:
    """Frames ``start .. stop - 1`` of an iterable (all from ``start`` when stop is None)."""
    for i, frame in enumerate(frames):
        if stop is not None and i >= stop:
            return
        if i >= start:
            yield frame


class _Bars:
    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = None
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.total = tqdm(total=total, desc="pose2d", unit="frame", position=0, dynamic_ncols=True)
        self.camera: Any = None

    def start(self, name: str, frames: int, done: int) -> None:
        if self.enabled:
            self.camera = self._tqdm(total=frames, initial=done, desc=f"  {name}", unit="frame", position=1,
                                     leave=False, dynamic_ncols=True)
            self.total.update(done)

    def update(self, n: int) -> None:
        if self.enabled:
            self.camera.update(n)
            self.total.update(n)

    def end(self) -> None:
        if self.enabled and self.camera is not None:
            self.camera.close()

    def close(self) -> None:
        if self.enabled:
            self.total.close()


def run_camera(backend: Any, job: CameraJob, store: ChunkStore, options: RunOptions, bars: _Bars | None = None,
               on_chunk: Callable[[str, int], None] | None = None) -> CameraResult:
    """Run ``backend`` over one camera's stream, resuming from ``store``'s chunks.

    Each chunk is saved as soon as it is full and then dropped: the result lists the chunks
    (loaded and new), not their keypoints. ``on_chunk(camera, frames_done)`` is called after each
    chunk is saved.
    """
    bars = bars or _Bars(0, False)
    stop = job.stop if job.stop is not None else (job.frames or None)
    chunks, start = store.load(job.start, stop)
    joints = backend.joints
    backend.reset(last_frame(chunks))
    if start > job.start:
        log.info("pose2d: %s resumes at frame %d from its checkpoints", job.name, start)
    bars.start(job.name, max(job.frames, start), start)
    t0 = time.perf_counter()
    computed = 0
    pending: list[np.ndarray] = []
    chunk_start = start
    batch: list[np.ndarray] = []
    index = start

    def flush_batch() -> None:
        nonlocal index, computed
        pending.extend(backend(batch, index))
        index += len(batch)
        computed += len(batch)
        bars.update(len(batch))
        batch.clear()

    def flush_chunk() -> None:
        nonlocal chunk_start
        if pending:
            chunks.append(store.save(chunk_start, stack_frames(pending, joints)))
            chunk_start += len(pending)
            pending.clear()
            if on_chunk is not None:
                on_chunk(job.name, chunk_start)

    reader = open_frames(job.stream, job.fps)
    decoded = 0
    try:
        prefetch = Prefetcher(_window(reader, start, stop), depth=options.queue_frames)
        for frame in prefetch:
            batch.append(frame)
            if len(batch) == options.batch_frames:
                flush_batch()
                if len(pending) >= options.chunk_frames:
                    flush_chunk()
        if batch:
            flush_batch()
        flush_chunk()
        decoded = reader.frames_read
    finally:
        reader.close()
        bars.end()
    if reader.broke_off:
        log.warning("pose2d: %s: stream %s %s; later frames have no keypoints", job.name, job.stream,
                    reader.break_reason)
    seconds = time.perf_counter() - t0
    return CameraResult(job.name, tuple(chunks), decoded, computed, seconds, start)


def run_cameras(backend: Any, jobs: list[CameraJob], stores: dict[str, ChunkStore], options: RunOptions,
                on_chunk: Callable[[str, int], None] | None = None) -> list[CameraResult]:
    """:func:`run_camera` for each job in turn, under one total progress bar."""
    bars = _Bars(sum(j.frames for j in jobs), options.show_progress)
    try:
        return [run_camera(backend, job, stores[job.name], options, bars, on_chunk) for job in jobs]
    finally:
        bars.close()
