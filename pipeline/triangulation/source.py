"""The triangulate stage's 2D keypoints, streamed: :func:`open_pose2d` and :class:`Pose2DSource`.

:func:`open_pose2d` checks ``pose2d/<cam>.npz`` against the rig and each other (camera names,
frame counts and numbers, cameras without any keypoint: one-line errors or warnings) but holds
only (T,) arrays per camera (:class:`~pipeline.pose2d.reader.Pose2DReader`).
:meth:`Pose2DSource.read` then gives any block of frames, equal to the same block of the whole
take loaded at once (the stage's loader before it streamed, kept as the reference in
``tests/triangulation/whole_take_reference.py``).

With a ``sync.yaml`` each block is resampled from the few source frames it needs: resampling
at a position p uses source frames floor(p) and floor(p) + 1 only
(:func:`~pipeline.triangulation.timeline.source_window`), and whether a resampled frame holds
any joint follows from the source frames' observed flags
(:func:`~pipeline.triangulation.timeline.resampled_coverage`), so opening never resamples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import ArtifactError, PosecapError
from pipeline.geometry.rig import Rig
from pipeline.pose2d.reader import Pose2DReader
from pipeline.triangulation.timeline import (
    frame_times,
    resample_keypoints,
    resampled_coverage,
    source_positions,
    source_window,
)

if TYPE_CHECKING:
    from pipeline.sync.io import CameraTiming, SyncTable

__all__ = ["Pose2DSource", "open_pose2d"]


@dataclass
class _Camera:
    """One usable camera: its file and, when synchronized, its timing on the reference clock."""

    reader: Pose2DReader
    timing: CameraTiming | None = None

    def block(self, times_s: np.ndarray | None, t0: int, t1: int) -> np.ndarray:
        """Keypoints (t1 - t0, P_c, J, 3) of timeline frames ``t0 .. t1 - 1`` (resampled when synchronized)."""
        if self.timing is None or times_s is None:  # not synchronized: the file's own frames
            return self.reader.read(t0, t1)
        t = self.timing
        pos = source_positions(times_s[t0:t1], self.reader.frame_index, t.fps, t.offset_s, t.rate)
        lo, hi = source_window(pos, self.reader.frames)
        return resample_keypoints(self.reader.read(lo, hi), pos - lo)


@dataclass
class Pose2DSource:
    """The usable cameras' keypoints, read block by block.

    Attributes:
        rig: the rig restricted to the usable cameras, in rig order.
        frame_index: (T,) int64 frame numbers (of the reference clock when synchronized).
        timestamp_s: (T,) reference-clock times, seconds; None when not synchronized.
        people: P, the largest slot count of the usable cameras.
        joints: J.
        dtype: dtype of :meth:`read`'s blocks (float32 from float32 files, float64 when resampled).
        cameras: per usable camera (rig order), its open file and timing; :meth:`close` closes them.
    """

    rig: Rig
    frame_index: np.ndarray
    timestamp_s: np.ndarray | None
    people: int
    joints: int
    dtype: np.dtype
    cameras: list[_Camera] = field(repr=False)

    @property
    def frames(self) -> int:
        """T, the number of frames."""
        return len(self.frame_index)

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Keypoints (C, t1 - t0, P, J, 3) of :attr:`dtype`, ``[x, y, score]`` (pixels), of frames ``t0 .. t1 - 1``.

        Equal to the whole take's keypoints ``[:, t0:t1]``: a camera's missing slots are x = y = NaN,
        score 0. Needs ``0 <= t0 <= t1 <= frames``.
        """
        if not 0 <= t0 <= t1 <= self.frames:
            raise ValueError(f"frame range [{t0}, {t1}) outside [0, {self.frames})")
        out = np.full((len(self.cameras), t1 - t0, self.people, self.joints, 3), np.nan, dtype=self.dtype)
        out[..., 2] = 0.0
        for c, cam in enumerate(self.cameras):
            block = cam.block(self.timestamp_s, t0, t1)
            out[c, :, : block.shape[1]] = block
        return out

    def close(self) -> None:
        """Close the cameras' files."""
        for cam in self.cameras:
            cam.reader.close()

    def __enter__(self) -> Pose2DSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pose2d(pose2d_dir: Path, rig: Rig, rig_path: Path, n_joints: int, log: logging.Logger | None = None,
                sync: SyncTable | None = None) -> Pose2DSource:
    """Open ``pose2d/<cam>.npz`` for the cameras of ``rig`` and check them against the rig and each other.

    Each file is read once, block by block, to validate it; afterwards only (T,) arrays stay in
    memory. Close the source (or use it as a context manager) when done.

    Raises:
        PosecapError: no keypoint files, a file for a camera the rig lacks, a joint count other than
            ``n_joints``, frame counts or frame numbers that differ between cameras (unless
            synchronized), a non-increasing ``frame_index`` under ``sync``, or fewer than two
            cameras with keypoints; a file's own problems as :class:`~pipeline.pose2d.reader.Pose2DReader`.
    """
    log = log or logging.getLogger("posecap")
    readers: dict[str, Pose2DReader] = {}
    try:
        for name in _camera_names(pose2d_dir, rig, rig_path, log):
            readers[name] = Pose2DReader(pose2d_dir / f"{name}.npz", n_joints)
        if sync is None:
            timings, frame_index, times = dict.fromkeys(readers), _shared_frame_index(readers, pose2d_dir), None
            observed = {n: r.any_observed for n, r in readers.items()}
        else:
            timings, frame_index, times, observed = _synchronize(readers, sync, pose2d_dir, log)
        usable = _usable(observed, pose2d_dir, log)
    except BaseException:
        for reader in readers.values():
            reader.close()
        raise
    for name in readers.keys() - set(usable):
        readers[name].close()
    dtypes = [np.dtype(np.float64) if sync is not None else readers[n].dtype for n in usable]
    return Pose2DSource(
        rig=rig.subset(usable), frame_index=np.asarray(frame_index).astype(np.int64), timestamp_s=times,
        people=max(readers[n].people for n in usable), joints=n_joints,
        dtype=np.result_type(np.float32, *dtypes),
        cameras=[_Camera(readers[n], timings[n]) for n in usable])


def _camera_names(pose2d_dir: Path, rig: Rig, rig_path: Path, log: logging.Logger) -> list[str]:
    """The rig's cameras that have a keypoint file, in rig order (warns about the others)."""
    files = sorted(pose2d_dir.glob("*.npz")) if pose2d_dir.is_dir() else []
    if not files:
        raise ArtifactError(f"{pose2d_dir}: no keypoint files (<cam>.npz); run the pose2d stage first")
    names = [f.stem for f in files]
    unknown = [n for n in names if n not in rig.names]
    if unknown:
        raise PosecapError(
            f"{pose2d_dir}: keypoints for camera(s) {', '.join(unknown)} not in {rig_path} "
            f"(rig cameras: {', '.join(rig.names)}); rename the files or recalibrate the rig"
        )
    missing = [n for n in rig.names if n not in names]
    if missing:
        log.warning("triangulate: no keypoints for camera(s) %s in %s; using the others", ", ".join(missing),
                    pose2d_dir)
    return [n for n in rig.names if n in names]


def _shared_frame_index(readers: dict[str, Pose2DReader], pose2d_dir: Path) -> np.ndarray:
    """The (T,) frame_index every camera must share when not synchronized."""
    first = next(iter(readers))
    T, frame_index = readers[first].frames, readers[first].frame_index
    for name, reader in readers.items():
        if reader.frames != T:
            raise PosecapError(
                f"{pose2d_dir}: {name}.npz has {reader.frames} frames but {first}.npz has {T}; "
                "every camera's keypoints must cover the same frames (re-run pose2d on synchronized streams)"
            )
        if not np.array_equal(reader.frame_index, frame_index):
            raise PosecapError(
                f"{pose2d_dir}: {name}.npz frame_index differs from {first}.npz; "
                "every camera's keypoints must cover the same frames"
            )
    return frame_index


def _usable(observed: dict[str, bool], pose2d_dir: Path, log: logging.Logger) -> list[str]:
    """The cameras with an observed keypoint (warns about the others); at least two."""
    usable = []
    for name, seen in observed.items():
        if not seen:
            log.warning("triangulate: %s/%s.npz has no observed keypoint; ignoring camera %s",
                        pose2d_dir, name, name)
            continue
        usable.append(name)
    if len(usable) < 2:
        raise PosecapError(
            f"{pose2d_dir}: only {len(usable)} camera(s) with keypoints ({', '.join(usable) or 'none'}); "
            "triangulation needs at least 2"
        )
    return usable


def _timings(readers: dict[str, Pose2DReader], sync: SyncTable, log: logging.Logger) -> dict[str, CameraTiming]:
    """Each camera's timing; a camera missing from ``sync.yaml`` is taken to be on the reference clock (warned)."""
    from pipeline.sync.io import CameraTiming

    timings = {}
    for name in readers:
        if name not in sync.cameras:
            log.warning("triangulate: camera %s is not in sync.yaml; assuming it is on the reference clock "
                        "(%s, %g fps)", name, sync.reference, sync.reference_fps)
        timings[name] = sync.cameras.get(name, CameraTiming(sync.reference, sync.reference_fps))
    return timings


def _timeline(readers: dict[str, Pose2DReader], timings: dict[str, CameraTiming],
              sync: SyncTable) -> tuple[np.ndarray, np.ndarray]:
    """The reference timeline: (T,) int64 frame numbers and (T,) times, seconds.

    The frames of the reference clock's first camera; without one, frames ``k / reference_fps``
    covering every camera's span.
    """
    ref = next((n for n in readers if timings[n].clock == sync.reference), None)
    if ref is not None:
        t = timings[ref]
        frame_index = readers[ref].frame_index.astype(np.int64)
        return frame_index, frame_times(frame_index, t.fps, t.offset_s, t.rate)
    spans = [frame_times(r.frame_index[[0, -1]], timings[n].fps, timings[n].offset_s, timings[n].rate)
             for n, r in readers.items() if r.frame_index.size]
    lo = int(np.ceil(min(s[0] for s in spans) * sync.reference_fps - 1e-9))
    hi = int(np.floor(max(s[1] for s in spans) * sync.reference_fps + 1e-9))
    frame_index = np.arange(lo, hi + 1, dtype=np.int64)
    return frame_index, frame_index / sync.reference_fps


def _synchronize(readers: dict[str, Pose2DReader], sync: SyncTable, pose2d_dir: Path, log: logging.Logger,
                 ) -> tuple[dict[str, CameraTiming], np.ndarray, np.ndarray, dict[str, bool]]:
    """Map every camera onto the reference timeline of ``sync`` (checked, one info line per camera).

    Returns:
        (camera -> timing, (T,) timeline frame numbers, (T,) timeline times in seconds,
        camera -> whether its resampled keypoints hold any joint).
    """
    timings = _timings(readers, sync, log)
    frame_index, times = _timeline(readers, timings, sync)
    observed = {}
    for name, reader in readers.items():
        t = timings[name]
        if np.any(np.diff(reader.frame_index) <= 0):
            raise PosecapError(f"{pose2d_dir}/{name}.npz: frame_index must increase, one per keypoint frame")
        pos = source_positions(times, reader.frame_index, t.fps, t.offset_s, t.rate)
        covered_frames = resampled_coverage(reader.observed, pos)
        covered = covered_frames.mean() if len(times) else 0.0
        log.info("triangulate: %s: offset %.4f s, rate %.6f, %g fps -> reference timeline (%.0f %% of frames "
                 "covered)", name, t.offset_s, t.rate, t.fps, 100 * covered)
        observed[name] = bool(covered_frames.any())
    return timings, frame_index, times, observed
