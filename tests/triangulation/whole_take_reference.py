"""The whole-take pose2d loader of the triangulate stage before it streamed, kept as the reference.

``open_pose2d`` (``pipeline.triangulation.source``) must give the same keypoints, errors and log
lines block by block as this function gives for the whole take at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ArtifactError, PosecapError
from pipeline.geometry.rig import Rig
from pipeline.pose2d.io import read_pose2d_arrays
from pipeline.sync.io import SyncTable
from pipeline.triangulation.timeline import frame_times, resample_camera


@dataclass(frozen=True)
class Pose2DInput:
    """Keypoints of the cameras that have them, aligned with a rig of those cameras.

    Attributes:
        rig: the rig restricted to the usable cameras, in rig order.
        keypoints: (C, T, P, J, 3) float32 (float64 after resampling) ``[x, y, score]``; P is the largest slot count.
        frame_index: (T,) int frame numbers (of the reference clock when synchronized).
        timestamp_s: (T,) reference-clock times, seconds; None when not synchronized (the caller
            then uses ``frame_index / fps``).
    """

    rig: Rig
    keypoints: np.ndarray
    frame_index: np.ndarray
    timestamp_s: np.ndarray | None = None


def load_pose2d(pose2d_dir: Path, rig: Rig, rig_path: Path, n_joints: int,
                log: logging.Logger | None = None, sync: SyncTable | None = None) -> Pose2DInput:
    """Read ``pose2d/<cam>.npz`` for the cameras of ``rig`` and check them against each other.

    With ``sync`` every camera is resampled onto the reference timeline first (see
    :func:`_synchronize`), so frame counts and frame indices may differ between cameras.

    Raises:
        PosecapError: no keypoint files, a file for a camera the rig lacks, a joint count other
            than ``n_joints``, frame counts or frame indices that differ between cameras, or
            fewer than two usable cameras.
    """
    log = log or logging.getLogger("posecap")
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
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name in [n for n in rig.names if n in names]:
        arrays[name] = read_pose2d_arrays(pose2d_dir / f"{name}.npz", n_joints)
    timestamp_s = None
    if sync is not None:
        arrays, timestamp_s = _synchronize(arrays, sync, pose2d_dir, log)
    first = next(iter(arrays))
    T = arrays[first]["keypoints"].shape[0]
    for name, arr in arrays.items():
        t_here = arr["keypoints"].shape[0]
        if t_here != T:
            raise PosecapError(
                f"{pose2d_dir}: {name}.npz has {t_here} frames but {first}.npz has {T}; "
                "every camera's keypoints must cover the same frames (re-run pose2d on synchronized streams)"
            )
        if not np.array_equal(arr["frame_index"], arrays[first]["frame_index"]):
            raise PosecapError(
                f"{pose2d_dir}: {name}.npz frame_index differs from {first}.npz; "
                "every camera's keypoints must cover the same frames"
            )
    usable = []
    for name, arr in arrays.items():
        kp = arr["keypoints"]
        if not np.isfinite(kp[..., :2]).any():
            log.warning("triangulate: %s/%s.npz has no observed keypoint; ignoring camera %s",
                        pose2d_dir, name, name)
            continue
        usable.append(name)
    if len(usable) < 2:
        raise PosecapError(
            f"{pose2d_dir}: only {len(usable)} camera(s) with keypoints ({', '.join(usable) or 'none'}); "
            "triangulation needs at least 2"
        )
    P = max(arrays[n]["keypoints"].shape[1] for n in usable)
    # the files' float32 stays float32 (resampled keypoints may be float64): half the memory of a
    # float64 copy, and triangulation converts each block of frames to float64 as it goes
    dtype = np.result_type(np.float32, *(arrays[n]["keypoints"].dtype for n in usable))
    kp = np.full((len(usable), T, P, n_joints, 3), np.nan, dtype=dtype)
    kp[..., 2] = 0.0
    for c, name in enumerate(usable):
        k = arrays[name]["keypoints"]
        kp[c, :, : k.shape[1]] = k
    frame_index = arrays[first]["frame_index"].astype(np.int64)
    return Pose2DInput(rig=rig.subset(usable), keypoints=kp, frame_index=frame_index, timestamp_s=timestamp_s)


def _synchronize(arrays: dict[str, dict[str, np.ndarray]], sync: SyncTable, pose2d_dir: Path,
                 log: logging.Logger) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Resample every camera onto the reference timeline of ``sync``.

    The timeline is the frames of the reference clock's first camera with keypoints (so its
    cameras are passed through unchanged); without one, frames ``k / reference_fps`` covering
    every camera's span. A camera missing from ``sync.yaml`` is taken to be on the reference clock.

    Returns:
        (camera -> {keypoints, frame_index} on the timeline, (T,) timeline times in seconds).
    """
    from pipeline.sync.io import CameraTiming

    timing: dict[str, CameraTiming] = {}
    for name in arrays:
        if name not in sync.cameras:
            log.warning("triangulate: camera %s is not in sync.yaml; assuming it is on the reference clock "
                        "(%s, %g fps)", name, sync.reference, sync.reference_fps)
        timing[name] = sync.cameras.get(name, CameraTiming(sync.reference, sync.reference_fps))
    ref = next((n for n in arrays if timing[n].clock == sync.reference), None)
    if ref is not None:
        t = timing[ref]
        frame_index = arrays[ref]["frame_index"].astype(np.int64)
        times = frame_times(frame_index, t.fps, t.offset_s, t.rate)
    else:
        spans = [frame_times(a["frame_index"][[0, -1]], timing[n].fps, timing[n].offset_s, timing[n].rate)
                 for n, a in arrays.items() if a["frame_index"].size]
        lo = int(np.ceil(min(s[0] for s in spans) * sync.reference_fps - 1e-9))
        hi = int(np.floor(max(s[1] for s in spans) * sync.reference_fps + 1e-9))
        frame_index = np.arange(lo, hi + 1, dtype=np.int64)
        times = frame_index / sync.reference_fps
    out = {}
    for name, arr in arrays.items():
        t = timing[name]
        if arr["frame_index"].size != arr["keypoints"].shape[0] or np.any(np.diff(arr["frame_index"]) <= 0):
            raise PosecapError(f"{pose2d_dir}/{name}.npz: frame_index must increase, one per keypoint frame")
        kp = resample_camera(arr["keypoints"], arr["frame_index"], t.fps, times, t.offset_s, t.rate)
        covered = np.isfinite(kp[..., :2]).any(axis=(1, 2, 3)).mean() if len(times) else 0.0
        log.info("triangulate: %s: offset %.4f s, rate %.6f, %g fps -> reference timeline (%.0f %% of frames "
                 "covered)", name, t.offset_s, t.rate, t.fps, 100 * covered)
        out[name] = {"keypoints": kp, "frame_index": frame_index}
    return out, times


