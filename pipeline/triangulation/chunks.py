"""Triangulation of a long take as parallel tasks over frame ranges, equal to the one-process result.

:func:`~pipeline.triangulation.reconstruct.reconstruct` has a per-frame half (association and
consensus triangulation, in fixed blocks of ``FRAME_BLOCK`` frames) and a whole-take half
(tracking, refinement, gap filling, filtering). Here the per-frame half of each frame range runs
as one task, block by block exactly as ``reconstruct`` does; the blocks are concatenated in
frame order and tracking runs once over the whole take, so identities carry across range
boundaries with nothing to stitch. Refinement's own chunks (independent given the take's bone
lengths) are solved as tasks too. The result is identical to ``reconstruct``'s for any
``task_frames`` and any executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.triangulation.reconstruct import (
    FRAME_BLOCK,
    FrameWork,
    Reconstruction,
    ReconstructOptions,
    concat_frame_work,
    finish,
    frame_work,
)
from pipeline.triangulation.refine import RefineOptions, TrackObservations, bone_lengths, refine_tracks

# ``map(fn, items) -> [fn(item) for item in items]``, possibly in parallel (``StageContext.map``)
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class FrameTask:
    """Per-frame work of one frame range: ``keypoints`` (C, T, P, J, 3), T whole blocks (or the take's rest)."""

    rig: Rig
    keypoints: np.ndarray
    flip_pairs: tuple[tuple[int, int], ...]
    options: ReconstructOptions


@dataclass(frozen=True)
class RefineTask:
    """Refinement chunks of one frame range: its tracks' joints (T, P', J, 3) and observations."""

    rig: Rig
    joints: np.ndarray
    obs: TrackObservations
    bones: tuple[tuple[int, int], ...]
    options: RefineOptions
    lengths: np.ndarray  # (P', n_bones) the whole take's bone lengths of the range's tracks


def run_frame_task(task: FrameTask) -> list[FrameWork]:
    """Per-frame work of a range, one :class:`FrameWork` per ``FRAME_BLOCK`` block (as ``reconstruct``)."""
    T = task.keypoints.shape[1]
    return [frame_work(task.rig, task.keypoints[:, t0:t0 + FRAME_BLOCK], task.flip_pairs, task.options)
            for t0 in range(0, max(T, 1), FRAME_BLOCK)]


def run_refine_task(task: RefineTask) -> np.ndarray:
    """Refine a range chunk by chunk (``options.chunk_frames`` frames each, as ``refine_tracks``); (T, P', J, 3)."""
    return refine_tracks(task.rig, task.joints, task.obs, task.bones, task.options, lengths=task.lengths)


def frame_ranges(frames: int, task_frames: int, grid: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of about ``task_frames`` frames on a ``grid`` (0 = one range for everything)."""
    if task_frames <= 0 or frames <= task_frames:
        return [(0, frames)]
    step = max(grid, task_frames // grid * grid)
    return [(t0, min(frames, t0 + step)) for t0 in range(0, frames, step)]


def reconstruct_in_tasks(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                         bones: Sequence[tuple[int, int]], options: ReconstructOptions, task_frames: int,
                         mapper: Mapper) -> Reconstruction:
    """:func:`~pipeline.triangulation.reconstruct.reconstruct` with its parallel parts sent through ``mapper``.

    Args:
        keypoints: (C, T, P, J, 3) as for ``reconstruct``.
        task_frames: frames per task (rounded down to whole blocks; 0 = one task).
        mapper: runs a module-level function over items, in order (``StageContext.map``).
    """
    kp = np.asarray(keypoints)  # frame_work converts each block to float64: no whole-take float64 copy
    pairs, bone_list = tuple(map(tuple, flip_pairs)), tuple(map(tuple, bones))
    tasks = [FrameTask(rig, kp[:, t0:t1], pairs, options)
             for t0, t1 in frame_ranges(kp.shape[1], task_frames, FRAME_BLOCK)]
    parts = [block for blocks in mapper(run_frame_task, tasks) for block in blocks]

    def refine_in_tasks(rig: Rig, joints: np.ndarray, obs: TrackObservations,
                        bones: Sequence[tuple[int, int]], ropt: RefineOptions) -> np.ndarray:
        lengths = bone_lengths(joints, bones)
        ranges = frame_ranges(joints.shape[0], task_frames, max(1, ropt.chunk_frames))
        jobs, where = [], []
        for t0, t1 in ranges:
            window, tracks = obs.window(t0, t1)
            jobs.append(RefineTask(rig, joints[t0:t1][:, tracks], window, bone_list, ropt, lengths[tracks]))
            where.append((t0, t1, tracks))
        out = joints.astype(np.float64, copy=True)
        for (t0, t1, tracks), refined in zip(where, mapper(run_refine_task, jobs)):
            out[t0:t1, tracks] = refined
        return out

    work = concat_frame_work(parts)
    del parts  # the blocks' arrays are in ``work`` now; keep one copy through the whole-take half
    return finish(rig, work, bones, options, refine_fn=refine_in_tasks)
