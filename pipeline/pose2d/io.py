"""Reading and writing ``pose2d/<cam>.npz`` and the chunk checkpoints of an interrupted run.

``pose2d/<cam>.npz`` (``shared/DESIGN.md``): ``keypoints`` float32 (T, P, J, 3) = x, y in
distorted image pixels and a score in [0, 1]; a missing joint or an empty person slot is
x = y = NaN, score 0. ``frame_index`` int64 (T,). P is the most detections of any frame.

Chunk checkpoints live in ``pose2d/.partial/<cam>/chunk_<first frame>.npz`` (a hidden folder, so the
engine's output hashing skips it) with a ``key.txt`` naming the settings they were made with; a
run with other settings discards them. They are deleted when the stage finishes.

A long take is never held whole: the runner keeps a small :class:`ChunkInfo` per saved chunk, and
:func:`write_pose2d_blocks` streams the chunks, one at a time, into ``pose2d/<cam>.npz``
(byte for byte what :func:`write_pose2d` writes for the merged array).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import ArraySpec, read_npz, write_bytes, write_npz, write_npz_streamed
from pipeline.errors import ArtifactError

__all__ = ["PARTIAL_DIR", "ChunkInfo", "ChunkStore", "CountedBlocks", "DetectionCounts", "check_pose2d_values",
           "chunk_blocks", "clean_keypoints", "clear_partial", "empty_keypoints", "first_bad_score", "frame_blocks",
           "last_frame", "pad_people", "pose2d_specs", "read_chunk", "read_pose2d", "read_pose2d_arrays",
           "stack_frames", "write_pose2d", "write_pose2d_blocks"]

PARTIAL_DIR = ".partial"
PAD_BLOCK_FRAMES = 1024  # empty frames appended per block by frame_blocks


def empty_keypoints(frames: int, people: int, joints: int) -> np.ndarray:
    """(T, P, J, 3) float32 of missing joints: x = y = NaN, score 0."""
    out = np.zeros((frames, people, joints, 3), np.float32)
    out[..., :2] = np.nan
    return out


def pad_people(keypoints: np.ndarray, people: int) -> np.ndarray:
    """(T, P, J, 3) -> (T, people, J, 3), new slots empty (people >= P)."""
    t, p, j, _ = keypoints.shape
    if p == people:
        return keypoints
    out = empty_keypoints(t, people, j)
    out[:, :p] = keypoints
    return out


def stack_frames(per_frame: list[np.ndarray], joints: int) -> np.ndarray:
    """Per-frame detections [(P_t, J, 3), ...] -> (T, max P_t, J, 3), empty slots NaN / 0."""
    people = max((len(d) for d in per_frame), default=0)
    out = empty_keypoints(len(per_frame), people, joints)
    for t, d in enumerate(per_frame):
        if len(d):
            out[t, : len(d)] = d
    return out


def clean_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Enforce the missing-joint convention: non-finite x / y or score <= 0 -> NaN, NaN, 0; scores clipped to [0, 1]."""
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    score = np.nan_to_num(kp[..., 2], nan=0.0)
    missing = ~np.isfinite(kp[..., :2]).all(-1) | ~(score > 0)
    kp[..., 2] = np.clip(score, 0.0, 1.0)
    kp[missing, :2] = np.nan
    kp[missing, 2] = 0.0
    return kp


def write_pose2d(path: str | Path, keypoints: np.ndarray, frame_index: np.ndarray) -> None:
    """Write one camera's ``pose2d/<cam>.npz`` atomically (see the module docstring)."""
    kp = np.asarray(keypoints)
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"write_pose2d: keypoints must be (T, P, J, 3); got {kp.shape}")
    fi = np.asarray(frame_index, dtype=np.int64)
    if fi.shape != (kp.shape[0],):
        raise ValueError(f"write_pose2d: frame_index must be ({kp.shape[0]},); got {fi.shape}")
    write_npz(path, keypoints=clean_keypoints(kp), frame_index=fi)


def write_pose2d_blocks(path: str | Path, blocks: Iterable[np.ndarray], frames: int, people: int,
                        joints: int) -> None:
    """Write one camera's ``pose2d/<cam>.npz`` from blocks along the frame axis, one block in memory at a time.

    ``blocks``: arrays (n_i, people, joints, 3) with ``sum(n_i) == frames`` (see :func:`frame_blocks`),
    read in order; each is cleaned as :func:`write_pose2d` cleans (:func:`clean_keypoints`).
    ``frame_index`` is ``0 .. frames - 1``. The file equals, byte for byte, ``write_pose2d`` of the
    concatenated blocks with that ``frame_index``.
    """
    shape = (frames, people, joints, 3)
    write_npz_streamed(path, {"keypoints": (shape, np.float32, (clean_keypoints(b) for b in blocks)),
                              "frame_index": ((frames,), np.int64, [np.arange(frames, dtype=np.int64)])})


def frame_blocks(blocks: Iterable[np.ndarray], frames: int, people: int, joints: int) -> Iterator[np.ndarray]:
    """Blocks (n_i, P_i, J, 3), P_i <= ``people``, -> blocks (m_i, people, J, 3) of ``frames`` frames in all.

    The frames past ``frames`` are dropped (the blocks after them are not read); a shortfall (a
    stream that broke off) is filled with empty frames (x = y = NaN, score 0), at most
    ``PAD_BLOCK_FRAMES`` per block; new person slots are empty (:func:`pad_people`). Concatenated,
    the blocks equal ``pad_people(concat(blocks) padded / cut to frames, people)``.
    """
    done = 0
    for block in blocks:
        if done == frames:
            return
        part = block[: frames - done]
        done += len(part)
        if len(part):
            yield pad_people(part, people)
    while done < frames:
        n = min(frames - done, PAD_BLOCK_FRAMES)
        done += n
        yield empty_keypoints(n, people, joints)


@dataclass(frozen=True)
class DetectionCounts:
    """Detection counts of keypoints (n, P, J, 3); a person slot is detected when any joint has finite x, y.

    Attributes:
        detections: detected person slots in all frames.
        frames_with_detections: frames with at least one detected person.
        max_people: most detected persons in one frame.
    """

    detections: int = 0
    frames_with_detections: int = 0
    max_people: int = 0

    @classmethod
    def of(cls, keypoints: np.ndarray) -> DetectionCounts:
        """The counts of one (n, P, J, 3) array."""
        per_frame = np.isfinite(keypoints[..., :2]).any(-1).any(-1).sum(-1)  # (n,) detected persons
        return cls(int(per_frame.sum()), int((per_frame > 0).sum()), int(per_frame.max(initial=0)))

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        """The counts of both sets of frames."""
        return DetectionCounts(self.detections + other.detections,
                               self.frames_with_detections + other.frames_with_detections,
                               max(self.max_people, other.max_people))


class CountedBlocks:
    """Keypoint blocks (n_i, P, J, 3) passed through once, their :class:`DetectionCounts` summed in ``counts``."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.blocks = blocks
        self.counts = DetectionCounts()

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.counts += DetectionCounts.of(block)
            yield block


def read_pose2d(path: str | Path, joints: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (T, P, J, 3) float32, frame_index (T,) int64) of a ``pose2d/<cam>.npz``."""
    arrays = read_pose2d_arrays(path, joints)
    return arrays["keypoints"].astype(np.float32), arrays["frame_index"].astype(np.int64)


def pose2d_specs(joints: int | None) -> dict[str, ArraySpec]:
    """The array specs of a ``pose2d/<cam>.npz`` (J = ``joints`` when given), in the order they are checked."""
    return {"keypoints": ArraySpec(("T", None, joints, 3)), "frame_index": ArraySpec(("T",), kind="iu")}


def first_bad_score(keypoints: np.ndarray) -> Any:
    """The first score (channel 2 of keypoints (..., 3)) that is not finite or outside [0, 1]; None if all are fine."""
    score = keypoints[..., 2]
    ok = np.isfinite(score) & (score >= 0.0) & (score <= 1.0)
    return None if ok.all() else score[~ok][0]


def check_pose2d_values(path: str | Path, bad_score: Any, frame_index: np.ndarray) -> None:
    """Raise the one-line error for a bad score (from :func:`first_bad_score`) or repeated frame numbers."""
    if bad_score is not None:
        raise ArtifactError(f"{path}: array 'keypoints' has a score of {bad_score}; scores (channel 2) must lie in "
                            "[0, 1], with 0 for a missing joint")
    if len(np.unique(frame_index)) != len(frame_index):
        raise ArtifactError(f"{path}: array 'frame_index' repeats frame numbers; each frame must appear once")


def read_pose2d_arrays(path: str | Path, joints: int | None = None) -> dict[str, np.ndarray]:
    """Every array of a ``pose2d/<cam>.npz``, its shapes, dtypes and values checked.

    ``keypoints`` (T, P, J, 3) float with T >= 1 (J = ``joints`` when given), x and y finite or
    NaN, scores in [0, 1] (never NaN); ``frame_index`` (T,) integers without repeats.

    Raises:
        ArtifactError: naming the file, the array and what is wrong.
    """
    arrays = read_npz(path, pose2d_specs(joints))
    kp, frames = arrays["keypoints"], arrays["frame_index"]
    if len(frames) == 0:
        raise ArtifactError(f"{path}: arrays 'keypoints' and 'frame_index' hold no frame; regenerate the file")
    check_pose2d_values(path, first_bad_score(kp), frames)
    return arrays


@dataclass(frozen=True)
class ChunkInfo:
    """A saved chunk checkpoint: its file, frames ``start .. start + frames - 1``, person slots and detection counts."""

    path: Path
    start: int
    frames: int
    people: int
    counts: DetectionCounts

    @classmethod
    def of(cls, path: Path, start: int, keypoints: np.ndarray) -> ChunkInfo:
        """The summary of chunk ``keypoints`` (n, P, J, 3) saved at ``path``."""
        return cls(path, start, len(keypoints), keypoints.shape[1], DetectionCounts.of(keypoints))


def read_chunk(path: str | Path) -> np.ndarray:
    """The keypoints (n, P, J, 3) of one chunk file.

    Raises:
        ArtifactError: the file is missing, unreadable or not (n, P, J, 3) floats.
    """
    return read_npz(path, {"keypoints": ArraySpec((None, None, None, 3))})["keypoints"]


class ChunkStore:
    """One camera's chunk checkpoints under ``<pose2d>/.partial/<cam>/``.

    A chunk holds ``keypoints`` (n, P, J, 3) for frames ``start .. start + n - 1``. ``key`` (a
    string naming the backend, weights and settings) is stored beside them; chunks made under
    another key are discarded on open.
    """

    def __init__(self, pose2d_dir: str | Path, camera: str, key: str) -> None:
        self.folder = Path(pose2d_dir) / PARTIAL_DIR / camera
        self.key = key
        key_file = self.folder / "key.txt"
        if self.folder.is_dir() and (not key_file.is_file() or key_file.read_text() != key):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not key_file.is_file():
            write_bytes(key_file, key.encode())

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("chunk_*.npz"))

    def path(self, start: int) -> Path:
        """The file of the chunk starting at frame ``start``."""
        return self.folder / f"chunk_{start:09d}.npz"

    def load(self, first: int = 0, stop: int | None = None) -> tuple[list[ChunkInfo], int]:
        """The saved chunks in frame order (summaries) and the next frame to compute (contiguous prefix only).

        Only chunks starting in ``first .. stop - 1`` count (one task's frame range; the prefix
        starts at ``first``). Each chunk is read in full, one at a time (its arrays are not kept),
        so a chunk that cannot be read (cut by a crash before the atomic rename could not happen,
        but a damaged disk could) ends the prefix; it and later chunks of the range are deleted.
        """
        def in_range(f: Path) -> bool:
            start = int(f.stem.split("_")[1])
            return start >= first and (stop is None or start < stop)

        chunks, next_frame = [], first
        for f in filter(in_range, self._files()):
            start = int(f.stem.split("_")[1])
            try:
                kp = read_chunk(f)
            except ArtifactError:
                kp = None
            if kp is None or start != next_frame:
                for g in filter(in_range, self._files()):
                    if int(g.stem.split("_")[1]) >= start:
                        g.unlink()
                break
            chunks.append(ChunkInfo.of(f, start, kp))
            next_frame = start + len(kp)
        return chunks, next_frame

    def save(self, start: int, keypoints: np.ndarray) -> ChunkInfo:
        """Write the chunk of frames ``start .. start + len(keypoints) - 1`` atomically; return its summary."""
        kp = np.asarray(keypoints, np.float32)
        path = self.path(start)
        write_npz(path, keypoints=kp)
        return ChunkInfo.of(path, start, kp)


def last_frame(chunks: list[ChunkInfo]) -> np.ndarray | None:
    """The people (P, J, 3) of the last frame of the last chunk (read from its file); None without chunks."""
    if not chunks:
        return None
    kp = read_chunk(chunks[-1].path)
    return kp[-1] if len(kp) else None


def chunk_blocks(chunks: Iterable[ChunkInfo]) -> Iterator[np.ndarray]:
    """The keypoints (n_i, P_i, J, 3) of each chunk in turn, read from its file when the consumer asks for it."""
    for chunk in chunks:
        yield read_chunk(chunk.path)


def clear_partial(pose2d_dir: str | Path) -> None:
    """Delete every chunk checkpoint (after a finished run)."""
    folder = Path(pose2d_dir) / PARTIAL_DIR
    if folder.is_dir():
        shutil.rmtree(folder)
