"""Reading the triangulate stage's inputs (rig + pose2d) and writing its outputs (pose3d).

Input problems become one-line :class:`~pipeline.errors.PosecapError` messages (which file, what
is wrong, what to do), or warnings when the data is still usable (a camera without keypoints, a
camera whose keypoints are all missing, while at least two cameras remain).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import ArraySpec, read_npz, write_npz, write_yaml
from pipeline.errors import ArtifactError, PosecapError
from pipeline.geometry.rig import Rig

POSE3D_SCHEMA = "pose3d@1"


@dataclass(frozen=True)
class Pose2DInput:
    """Keypoints of the cameras that have them, aligned with a rig of those cameras.

    Attributes:
        rig: the rig restricted to the usable cameras, in rig order.
        keypoints: (C, T, P, J, 3) float64 ``[x, y, score]``; P is the largest slot count.
        frame_index: (T,) int frame numbers.
    """

    rig: Rig
    keypoints: np.ndarray
    frame_index: np.ndarray


def load_pose2d(pose2d_dir: Path, rig: Rig, rig_path: Path, n_joints: int,
                log: logging.Logger | None = None) -> Pose2DInput:
    """Read ``pose2d/<cam>.npz`` for the cameras of ``rig`` and check them against each other.

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
    kp_spec = {"keypoints": ArraySpec(("T", None, n_joints, 3)), "frame_index": ArraySpec(("T",), kind="iu")}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name in [n for n in rig.names if n in names]:
        arrays[name] = read_npz(pose2d_dir / f"{name}.npz", kp_spec)
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
    kp = np.full((len(usable), T, P, n_joints, 3), np.nan)
    kp[..., 2] = 0.0
    for c, name in enumerate(usable):
        k = arrays[name]["keypoints"].astype(np.float64)
        kp[c, :, : k.shape[1]] = k
    frame_index = arrays[first]["frame_index"].astype(np.int64)
    return Pose2DInput(rig=rig.subset(usable), keypoints=kp, frame_index=frame_index)


def write_pose3d(out_dir: Path, joints: np.ndarray, reprojection_error_px: np.ndarray, views_used: np.ndarray,
                 frame_index: np.ndarray, *, skeleton: str, joint_names: list[str], cameras: list[str],
                 settings: dict[str, Any], stats: dict[str, Any]) -> None:
    """Write ``pose3d/skeletons.npz`` and ``pose3d/pose3d.yaml`` (schema ``posecap/pose3d@1``).

    The YAML lists, per person slot, the frames where any joint is known, the first and last such
    frame, and the mean reprojection error; plus the cameras, joint names and the settings used.
    """
    T, P, J, _ = joints.shape
    write_npz(
        out_dir / "skeletons.npz",
        joints=joints.astype(np.float32),
        reprojection_error_px=reprojection_error_px.astype(np.float32),
        views_used=views_used.astype(np.int16),
        frame_index=frame_index.astype(np.int64),
    )
    people = []
    for p in range(P):
        frames = np.flatnonzero(np.isfinite(joints[:, p]).all(-1).any(-1))
        err = reprojection_error_px[:, p]
        err = err[np.isfinite(err)]
        views = views_used[:, p][views_used[:, p] > 0]
        people.append({
            "id": p,
            "frames_visible": int(frames.size),
            "first_frame": int(frame_index[frames[0]]) if frames.size else None,
            "last_frame": int(frame_index[frames[-1]]) if frames.size else None,
            "mean_reprojection_error_px": round(float(err.mean()), 3) if err.size else None,
            "mean_views_used": round(float(views.mean()), 3) if views.size else None,
        })
    all_err = reprojection_error_px[np.isfinite(reprojection_error_px)]
    write_yaml(out_dir / "pose3d.yaml", {
        "units": "m",
        "skeleton": skeleton,
        "joint_names": list(joint_names),
        "cameras": list(cameras),
        "frames": int(T),
        "people": people,
        "mean_reprojection_error_px": round(float(all_err.mean()), 3) if all_err.size else None,
        "stats": stats,
        "settings": settings,
    }, POSE3D_SCHEMA)
