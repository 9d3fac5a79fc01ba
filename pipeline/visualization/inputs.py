"""What the visualisations read besides pose3d: session.yaml's capture streams and the 2D keypoints.

``session.yaml`` and ``streams/`` are optional: a session made by hand (a rig.yaml, pose2d and
pose3d) has neither, and the overlays are then drawn on a neutral background. Stages declare them
as inputs only when they exist or when the config's ``crop`` section has a capture recording
(so crop will make them), see :func:`optional_session_inputs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import read_yaml
from pipeline.errors import ArtifactError
from pipeline.pose2d.io import read_pose2d_arrays

log = logging.getLogger("posecap")

SESSION_YAML = "session.yaml"
STREAMS = "streams"
SESSION_SCHEMA = "session@1"


@dataclass(frozen=True)
class CaptureInfo:
    """The capture recording of ``session.yaml``: ``streams`` camera -> absolute path, ``fps``."""

    streams: dict[str, Path]
    fps: float | None


def read_capture(session_dir: Path) -> CaptureInfo:
    """Read the capture recording from ``session_dir/session.yaml``; empty when there is no file.

    Raises:
        ArtifactError: the file exists but is malformed.
    """
    path = Path(session_dir) / SESSION_YAML
    if not path.is_file():
        return CaptureInfo({}, None)
    data = read_yaml(path, SESSION_SCHEMA)
    recordings = data.get("recordings") or {}
    if not isinstance(recordings, dict):
        raise ArtifactError(f"{path}: field 'recordings' must be a mapping of recording name -> recording")
    captures = [(n, r) for n, r in recordings.items() if isinstance(r, dict) and r.get("kind") == "capture"]
    if not captures:
        return CaptureInfo({}, None)
    if len(captures) > 1:
        log.warning("%s: %d capture recordings; using %r", path, len(captures), captures[0][0])
    name, rec = captures[0]
    cams = rec.get("cameras") or {}
    if not isinstance(cams, dict):
        raise ArtifactError(f"{path}: field 'recordings.{name}.cameras' must be a mapping of camera -> stream")
    streams: dict[str, Path] = {}
    fps_values = []
    for cam, entry in cams.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("stream"):
            streams[str(cam)] = Path(session_dir) / str(entry["stream"])
        if isinstance(entry.get("fps"), (int, float)) and entry["fps"] > 0:
            fps_values.append(float(entry["fps"]))
    return CaptureInfo(streams, float(np.median(fps_values)) if fps_values else None)


def session_fps(session_dir: Path) -> float | None:
    """The capture frame rate from session.yaml, or None."""
    try:
        return read_capture(session_dir).fps
    except ArtifactError as exc:
        log.warning("%s", exc)
        return None


def load_pose2d_aligned(path: Path, frame_index: np.ndarray, n_joints: int) -> np.ndarray | None:
    """One camera's ``pose2d/<cam>.npz`` keypoints on the pose3d frames.

    Returns:
        (T, P2, J, 3) float64 ``[x, y, score]`` for the T frames of ``frame_index`` (NaN / 0 where
        the camera's file has no such frame), or None when the file does not exist.
    """
    if not path.is_file():
        return None
    arr = read_pose2d_arrays(path, n_joints)
    kp = arr["keypoints"].astype(np.float64)
    fi = arr["frame_index"].astype(np.int64)
    out = np.full((len(frame_index), kp.shape[1], n_joints, 3), np.nan)
    out[..., 2] = 0.0
    order = np.argsort(fi)
    pos = np.searchsorted(fi[order], frame_index)
    pos = np.clip(pos, 0, max(len(fi) - 1, 0))
    hit = (fi[order][pos] == frame_index) if len(fi) else np.zeros(len(frame_index), bool)
    out[hit] = kp[order][pos[hit]]
    return out
