"""A whole take, block by block: what :func:`~pipeline.triangulation.reconstruct.reconstruct` does, with bounded memory.

The take is cut into blocks of ``FRAME_BLOCK`` frames and passed over four times:

1. **per-frame work** (association + consensus triangulation, :func:`frame_work`): each block on
   its own, in parallel tasks over frame ranges; the results go to a :class:`BlockStore`;
2. **tracking** (:class:`~pipeline.triangulation.tracking.Tracker`): the blocks' people in frame
   order, the tracker's state carried from block to block; then each track's median bone
   lengths over the take (kept as per-detection samples, not per frame x track);
3. **refinement** (one least-squares problem per block, given the take's bone lengths) and
   each slot's views used and reprojection error, in parallel tasks; back to the store, still in
   per-frame detection slots;
4. **output**, a block at a time (:class:`TakeResult`): the block's tracks made dense, short gaps
   filled and the temporal filter run over the block plus ``FILTER_HALO`` frames of context on
   each side (the Butterworth filter's transients decay by 0.68 per frame, so the context makes
   a block's values those of the whole track to far below float32 resolution).

With a folder store only a few blocks are in memory at any time (plus a few bytes per frame
for the track numbers and bone-length samples); the result does not depend on the store, on how
the blocks are spread over tasks, or on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from pipeline.geometry.rig import Rig
from pipeline.geometry.triangulate import reprojection_errors
from pipeline.triangulation.blocks import Arrays, BlockStore, block_path, save_block
from pipeline.triangulation.filters import butterworth, fill_gaps, one_euro
from pipeline.triangulation.reconstruct import (
    FRAME_BLOCK,
    Mapper,
    Reconstruction,
    ReconstructOptions,
    frame_work,
)
from pipeline.triangulation.refine import RefineOptions, TrackObservations, refine_chunk
from pipeline.triangulation.tracking import Tracker

# frames of context on each side of an output block for the temporal filter
FILTER_HALO = 128
# rows per piece of the dense output (rows x every track of the take)
OUTPUT_ROWS = 50

FRAME_ARRAYS = ("members", "points", "inliers", "uv", "weights")


class KeypointSource(Protocol):
    """Keypoints of a take by frame range: ``read(t0, t1)`` -> (C, t1 - t0, P, J, 3) ``[x, y, score]``."""

    frames: int

    def read(self, t0: int, t1: int) -> np.ndarray: ...


@dataclass(frozen=True)
class KeypointArray:
    """A :class:`KeypointSource` over an array in memory: ``keypoints`` (C, T, P, J, 3), frame 0 = ``offset``."""

    keypoints: np.ndarray
    offset: int = 0

    @property
    def frames(self) -> int:
        return self.offset + self.keypoints.shape[1]

    def read(self, t0: int, t1: int) -> np.ndarray:
        return self.keypoints[:, t0 - self.offset:t1 - self.offset]


def block_ranges(frames: int) -> list[tuple[int, int]]:
    """``[t0, t1)`` of every block of a take of ``frames`` frames (one empty block for an empty take)."""
    return [(t0, min(frames, t0 + FRAME_BLOCK)) for t0 in range(0, max(frames, 1), FRAME_BLOCK)]


def task_groups(n_blocks: int, task_frames: int) -> list[list[int]]:
    """Block indices per task: whole blocks of about ``task_frames`` frames (0 = one task)."""
    per = n_blocks if task_frames <= 0 else max(1, task_frames // FRAME_BLOCK)
    return [list(range(i, min(n_blocks, i + per))) for i in range(0, n_blocks, per)]


# ---------------------------------------------------------------- pass 1: per-frame work


@dataclass(frozen=True)
class FrameTask:
    """Per-frame work of some blocks: their keypoints come from ``source``; ``folder`` = spill there."""

    rig: Rig
    source: KeypointSource
    blocks: tuple[tuple[int, int, int], ...]  # (index, t0, t1)
    flip_pairs: tuple[tuple[int, int], ...]
    options: ReconstructOptions
    folder: Path | None
    show_progress: bool = False


@dataclass(frozen=True)
class FrameSummary:
    """What the lead keeps of a block's per-frame work (its arrays went to the store)."""

    index: int
    swaps_corrected: int
    detections: int
    arrays: Arrays | None  # the arrays, when not spilled to a folder


def run_frame_task(task: FrameTask) -> list[FrameSummary]:
    """Associate and triangulate each block of the task (see :func:`frame_work`)."""
    out = []
    for index, t0, t1 in tqdm(task.blocks, desc="triangulate", unit="block", disable=not task.show_progress):
        fw = frame_work(task.rig, task.source.read(t0, t1), task.flip_pairs, task.options)
        arrays = {name: getattr(fw, name) for name in FRAME_ARRAYS}
        if task.folder is not None:
            save_block(task.folder, "frame", index, arrays)
        out.append(FrameSummary(index, fw.swaps_corrected, fw.detections,
                                None if task.folder is not None else arrays))
    return out


# ---------------------------------------------------------------- pass 2: tracking


def _bone_samples(points: np.ndarray, track_of: np.ndarray, bones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bone lengths of the tracked slots: (track ids (n,), lengths (n, n_bones) metres)."""
    t_idx, k_idx = np.nonzero(track_of >= 0)
    p = points[t_idx, k_idx]  # (n, J, 3)
    return track_of[t_idx, k_idx], np.linalg.norm(p[:, bones[:, 0]] - p[:, bones[:, 1]], axis=-1)


def median_bone_lengths(ids: np.ndarray, lengths: np.ndarray, n_tracks: int) -> np.ndarray:
    """(P, n_bones) median of each track's bone-length samples, ignoring NaN (NaN if never seen).

    Equal to :func:`~pipeline.triangulation.refine.bone_lengths` on the dense (T, P, J, 3) joints:
    the frames a track is absent add only NaN there.
    """
    out = np.full((n_tracks, lengths.shape[1]), np.nan)
    order = np.argsort(ids, kind="stable")
    ids, lengths = ids[order], lengths[order]
    bounds = np.searchsorted(ids, np.arange(n_tracks + 1))
    for p in range(n_tracks):
        sample = lengths[bounds[p]:bounds[p + 1]]
        ok = np.isfinite(sample).any(0)
        if ok.any():
            out[p, ok] = np.nanmedian(sample[:, ok], axis=0)
    return out


# ---------------------------------------------------------------- pass 3: refinement + slot statistics


@dataclass(frozen=True)
class RefineTask:
    """Refinement and slot statistics of some blocks (``frames`` = their arrays when not in ``folder``)."""

    rig: Rig
    blocks: tuple[int, ...]
    track_of: tuple[np.ndarray, ...]  # (t, K) per block
    frames: tuple[Arrays, ...] | None
    folder: Path | None
    n_tracks: int
    bones: tuple[tuple[int, int], ...]
    refine: RefineOptions | None
    lengths: np.ndarray  # (P, n_bones) the take's median bone lengths
    show_progress: bool = False


def refine_block(rig: Rig, frame: Arrays, track_of: np.ndarray, n_tracks: int, bones: Sequence[tuple[int, int]],
                 refine: RefineOptions | None, lengths: np.ndarray) -> Arrays:
    """One block's tracked joints, refined, in slot form, with views used and reprojection error per joint.

    Returns:
        ``track_of`` (t, K); ``points`` (t, K, J, 3) metres, NaN in untracked slots; ``views``
        (t, K, J) int16 inlier views; ``error`` (t, K, J) mean reprojection error, px (NaN = none).
    """
    uv, inliers = frame["uv"], frame["inliers"]
    weights = np.where(inliers, frame["weights"], 0.0)
    n_frames, K, J, _ = frame["points"].shape
    obs = TrackObservations(uv, weights, track_of, n_tracks)
    t_idx, k_idx = np.nonzero(track_of >= 0)
    slot_points = np.full((n_frames, K, J, 3), np.nan)
    slot_points[t_idx, k_idx] = frame["points"][t_idx, k_idx]
    tracks = obs.tracks_in(0, n_frames)
    if refine is not None and tracks.size:
        uv_d, w_d = obs.dense(0, n_frames, tracks)
        refined = refine_chunk(rig, _dense(track_of, slot_points, tracks, np.nan), uv_d, w_d, bones, refine,
                               lengths[tracks])
        local = obs.local_index(0, n_frames, tracks)
        slot_points[t_idx, k_idx] = refined[t_idx, local[t_idx, k_idx]]
    used = (weights > 0) & np.isfinite(slot_points).all(-1)[None]  # (C, t, K, J)
    err = reprojection_errors(rig, slot_points, uv)
    views = used.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_err = np.where(used, err, 0.0).sum(0) / np.where(views > 0, views, np.nan)
    return {"track_of": track_of, "points": slot_points, "views": views.astype(np.int16), "error": mean_err}


def run_refine_task(task: RefineTask) -> list[Arrays | None]:
    """:func:`refine_block` for each block of the task; spilled to ``folder`` (returns None) or returned."""
    out: list[Arrays | None] = []
    desc = "refine" if task.refine is not None else "statistics"
    for i, index in enumerate(tqdm(task.blocks, desc=desc, unit="block", disable=not task.show_progress)):
        if task.frames is not None:
            frame = task.frames[i]
        else:
            with np.load(block_path(task.folder, "frame", index), allow_pickle=False) as npz:
                frame = {n: npz[n] for n in ("points", "uv", "weights", "inliers")}
        arrays = refine_block(task.rig, frame, task.track_of[i], task.n_tracks, task.bones, task.refine,
                              task.lengths)
        if task.folder is not None:
            save_block(task.folder, "refined", index, arrays)
            out.append(None)
        else:
            out.append(arrays)
    return out


# ---------------------------------------------------------------- pass 4: output


def _dense(track_of: np.ndarray, values: np.ndarray, tracks: np.ndarray, fill: float) -> np.ndarray:
    """Slot values (t, K, ...) -> (t, len(tracks), ...) for the sorted global ``tracks``."""
    local = np.full(int(tracks.max(initial=-1)) + 2, -1, dtype=np.int64)
    local[tracks] = np.arange(tracks.size)
    t_idx, k_idx = np.nonzero(track_of >= 0)
    out = np.full((track_of.shape[0], tracks.size) + values.shape[2:], fill,
                  dtype=np.result_type(values.dtype, np.asarray(fill).dtype))
    out[t_idx, local[track_of[t_idx, k_idx]]] = values[t_idx, k_idx]
    return out


def _concat_slots(parts: Sequence[np.ndarray], fill: float | int) -> np.ndarray:
    """Consecutive (t_i, K_i, ...) blocks -> (sum t_i, max K_i, ...), padded with ``fill``."""
    K = max(p.shape[1] for p in parts)
    padded = []
    for p in parts:
        if p.shape[1] < K:
            pad = np.full((p.shape[0], K - p.shape[1]) + p.shape[2:], fill, dtype=p.dtype)
            p = np.concatenate([p, pad], axis=1)
        padded.append(p)
    return np.concatenate(padded)


@dataclass
class TakeResult:
    """Tracked 3D people of a take, held in a :class:`BlockStore` and produced a block at a time.

    Attributes:
        store: the blocks (``"refined"`` kind, see :func:`refine_block`).
        frames: T; n_tracks: P; joints: J.
        options: the reconstruction settings (gap filling and filter).
        swaps_corrected, detections_associated: as in :class:`Reconstruction`.
        show_progress: a progress bar over :meth:`joints_blocks`.
    """

    store: BlockStore
    frames: int
    n_tracks: int
    joints: int
    options: ReconstructOptions
    swaps_corrected: int
    detections_associated: float
    show_progress: bool = False

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return block_ranges(self.frames)

    def _scattered(self, name: str, fill: float | int, dtype: type) -> Iterator[np.ndarray]:
        for index, (t0, t1) in enumerate(self.blocks):
            if t1 > t0:
                arrays = self.store.get("refined", index, ("track_of", name))
                tracks = np.unique(arrays["track_of"][arrays["track_of"] >= 0])
                yield from self._pieces(_dense(arrays["track_of"], arrays[name], tracks, fill), tracks, fill, dtype)

    def _pieces(self, values: np.ndarray, tracks: np.ndarray, fill: float | int, dtype: type) -> Iterator[np.ndarray]:
        """A block's values of its ``tracks`` (t, P', ...) as (<= OUTPUT_ROWS, P, ...) pieces over every track.

        The output has one column per track of the whole take, so a block of it costs rows x P;
        pieces of ``OUTPUT_ROWS`` rows keep that small when a weak detector makes many tracks.
        """
        for r0 in range(0, len(values), OUTPUT_ROWS):
            part = values[r0:r0 + OUTPUT_ROWS]
            out = np.full((len(part), self.n_tracks) + values.shape[2:], fill, dtype=dtype)
            out[:, tracks] = part
            yield out

    def error_blocks(self) -> Iterator[np.ndarray]:
        """(t, P, J) pieces: mean reprojection error over the views used, px; NaN where not triangulated."""
        return self._scattered("error", np.nan, np.float64)

    def views_blocks(self) -> Iterator[np.ndarray]:
        """(t, P, J) int16 pieces: inlier views (0 where not triangulated, e.g. gap-filled)."""
        return self._scattered("views", 0, np.int16)

    def joints_blocks(self) -> Iterator[np.ndarray]:
        """(t, P, J, 3) pieces of consecutive frames: metres, gap-filled and filtered; NaN where unknown."""
        opt = self.options
        gap = max(0, opt.gap_max_frames)
        halo = FILTER_HALO if opt.filter != "none" else 0
        margin = halo + gap + 1
        blocks = self.blocks
        cache: dict[int, Arrays] = {}
        for t0, t1 in tqdm(blocks, desc="write pose3d", unit="block", disable=not self.show_progress):
            if t1 <= t0:
                continue
            lo, hi = max(0, t0 - margin), min(self.frames, t1 + margin)
            first, last = lo // FRAME_BLOCK, (hi - 1) // FRAME_BLOCK
            for i in [i for i in cache if i < first]:
                del cache[i]
            for i in range(first, last + 1):
                if i not in cache:
                    cache[i] = self.store.get("refined", i, ("track_of", "points"))
            base = first * FRAME_BLOCK
            track_of = _concat_slots([cache[i]["track_of"] for i in range(first, last + 1)], -1)[lo - base:hi - base]
            points = _concat_slots([cache[i]["points"] for i in range(first, last + 1)], np.nan)[lo - base:hi - base]
            tracks = np.unique(track_of[track_of >= 0])
            centre = np.full((t1 - t0, tracks.size, self.joints, 3), np.nan)
            if tracks.size:
                x = fill_gaps(_dense(track_of, points, tracks, np.nan), gap)
                f0, f1 = max(lo, t0 - halo) - lo, min(hi, t1 + halo) - lo  # the filter's rows of the window
                x = x[f0:f1]
                if opt.filter == "butterworth":
                    x = butterworth(x, opt.fps, opt.butterworth_cutoff_hz, opt.butterworth_order)
                elif opt.filter == "one_euro":
                    x = one_euro(x, opt.fps, opt.one_euro_min_cutoff_hz, opt.one_euro_beta)
                c0 = t0 - (lo + f0)
                centre = x[c0:c0 + t1 - t0]
            yield from self._pieces(centre, tracks, np.nan, np.float64)

    def to_reconstruction(self) -> Reconstruction:
        """Every block concatenated into the dense :class:`Reconstruction` (memory grows with the take)."""
        P, J = self.n_tracks, self.joints

        def cat(blocks: Iterator[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
            parts = list(blocks)
            return np.concatenate(parts) if parts else np.zeros((0,) + shape, dtype)

        return Reconstruction(
            joints=cat(self.joints_blocks(), (P, J, 3), np.float64),
            reprojection_error_px=cat(self.error_blocks(), (P, J), np.float64),
            views_used=cat(self.views_blocks(), (P, J), np.int16),
            swaps_corrected=self.swaps_corrected,
            detections_associated=self.detections_associated,
        )


def _serial(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


def reconstruct_take(rig: Rig, source: KeypointSource | np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                     bones: Sequence[tuple[int, int]], options: ReconstructOptions, store: BlockStore,
                     task_frames: int = 0, mapper: Mapper | None = None, show_progress: bool = False) -> TakeResult:
    """Associate, triangulate, track and refine a take block by block (see the module doc).

    Args:
        rig: C cameras, in the order of the keypoints' first axis.
        source: the take's keypoints, (C, T, P, J, 3) ``[x, y, score]`` in distorted pixels (an
            array or a :class:`KeypointSource`); NaN / 0 where missing. Slots are detections.
        flip_pairs: left/right joint pairs (swap correction); bones: skeleton bones (refinement).
        store: where the blocks go (a folder store keeps memory bounded).
        task_frames: frames per parallel task (whole blocks; 0 = one task).
        mapper: runs a module-level function over items, in order (``StageContext.map``); None = here.
        show_progress: progress bars over each task's blocks (and :meth:`TakeResult.joints_blocks`).

    Returns:
        A :class:`TakeResult` reading its blocks from ``store`` (keep the store open while using it).
    """
    mapper = mapper or _serial
    src = KeypointArray(np.asarray(source)) if isinstance(source, np.ndarray) else source
    T = src.frames
    ranges = block_ranges(T)
    folder = store.folder
    pairs, bone_list = tuple(map(tuple, flip_pairs)), tuple(map(tuple, bones))
    groups = task_groups(len(ranges), task_frames)
    show_progress = show_progress and len(ranges) > 1  # no bars for a take of one block

    tasks = [FrameTask(rig, _task_source(src, ranges, g), tuple((i, *ranges[i]) for i in g), pairs, options, folder,
                       show_progress) for g in groups]
    summaries = [s for part in mapper(run_frame_task, tasks) for s in part]
    for s in summaries:
        if s.arrays is not None:
            store.put("frame", s.index, s.arrays)

    # one pass: track, and keep each tracked slot's bone lengths and detection count under its raw
    # track number (the final numbers are known only once every block is tracked)
    tracker = Tracker(options.tracking)
    bone_idx = np.asarray(bones, dtype=np.int64).reshape(-1, 2)
    raws, ids, samples, found = [], [], [], []
    for i in range(len(ranges)):
        frame = store.get("frame", i, ("points", "members"))
        raw = tracker.step(frame["points"])
        raws.append(raw)
        a, b = _bone_samples(frame["points"], raw, bone_idx)
        ids.append(a)
        samples.append(b)
        found.append((frame["members"][raw >= 0] >= 0).sum(-1))  # detections in each tracked slot
    remap = tracker.remap()
    n_tracks = int(remap.max(initial=-1)) + 1
    track_of = [remap[r] for r in raws]
    del raws
    final = remap[np.concatenate(ids)]
    kept = int(np.concatenate(found)[final >= 0].sum())
    lengths = median_bone_lengths(final[final >= 0], np.concatenate(samples)[final >= 0], n_tracks)
    del ids, samples, found

    refine_tasks = [RefineTask(rig, tuple(g), tuple(track_of[i] for i in g),
                               None if folder is not None else tuple(store.get("frame", i) for i in g),
                               folder, n_tracks, bone_list, options.refine, lengths, show_progress) for g in groups]
    for g, part in zip(groups, mapper(run_refine_task, refine_tasks)):
        for i, arrays in zip(g, part):
            if arrays is not None:
                store.put("refined", i, arrays)
    detections = sum(s.detections for s in summaries)
    J = frame["points"].shape[2]  # the last frame block read above (there is always one)
    return TakeResult(store, T, n_tracks, J, options, sum(s.swaps_corrected for s in summaries),
                      kept / detections if detections else 0.0, show_progress)


def _task_source(src: KeypointSource, ranges: list[tuple[int, int]], group: list[int]) -> KeypointSource:
    """What a task reads its blocks from: a slice of an in-memory array (so only that travels), else the source."""
    if isinstance(src, KeypointArray):
        t0, t1 = ranges[group[0]][0], ranges[group[-1]][1]
        return KeypointArray(src.read(t0, t1), t0)
    return src
