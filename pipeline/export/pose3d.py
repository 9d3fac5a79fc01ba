"""Reading ``pose3d/`` for the exporters and the visualisations, and the frames they write in.

``pose3d/skeletons.npz`` holds ``joints`` (T, P, J, 3) metres in the world frame (NaN unknown),
``reprojection_error_px`` (T, P, J), ``views_used`` (T, P, J) and ``frame_index`` (T,);
``pose3d/pose3d.yaml`` (schema ``posecap/pose3d@1``) names the skeleton, the joints and the frame
rate the keypoints were filtered at (``settings.fps``).

Tools differ in which way is up: OpenSim and BVH are Y-up, C3D viewers Z-up, and posecap's world
is whatever the calibration chose (a floor frame, Z up; or the first camera, roughly -Y up).
:func:`estimate_up` finds the world's up direction from the skeletons themselves, and
:func:`rotation_to_up` gives the rotation that turns it into the axis a format expects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import ArraySpec, read_npz, read_yaml
from pipeline.errors import ArtifactError
from pipeline.skeleton import COCO17, Skeleton, get_skeleton

log = logging.getLogger("posecap")

POSE3D_SCHEMA = "pose3d@1"
DEFAULT_FPS = 30.0
UP_CHOICES = ("auto", "x", "y", "z", "-x", "-y", "-z")
SNAP_COS = float(np.cos(np.deg2rad(25.0)))
"""An estimated up direction within 25 degrees of a world axis is snapped onto it."""


@dataclass(frozen=True, eq=False)
class Pose3D:
    """The triangulated skeletons of a session.

    Attributes:
        joints: (T, P, J, 3) float64 metres, world frame, NaN where unknown.
        reprojection_error_px: (T, P, J) float64 px, NaN where unknown.
        views_used: (T, P, J) int views behind each joint (0 where unknown).
        frame_index: (T,) int64 frame numbers in the streams.
        skeleton: the joint order (``joint_names`` come from pose3d.yaml when present).
        joint_names: J names in array order.
        fps: frame rate of the frames (pose3d.yaml ``settings.fps``), or None if unknown.
    """

    joints: np.ndarray
    reprojection_error_px: np.ndarray
    views_used: np.ndarray
    frame_index: np.ndarray
    skeleton: Skeleton
    joint_names: tuple[str, ...]
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def num_people(self) -> int:
        return int(self.joints.shape[1])

    def people_present(self) -> list[int]:
        """Person slots with at least one known joint."""
        seen = np.isfinite(self.joints).all(-1).any(axis=(0, 2))
        return [int(p) for p in np.flatnonzero(seen)]


def load_pose3d(pose3d_dir: str | Path) -> Pose3D:
    """Read ``pose3d/skeletons.npz`` (+ ``pose3d.yaml`` when present).

    Raises:
        ArtifactError: missing or malformed file, array shapes that disagree, or a joint count
            that matches neither pose3d.yaml's joint names nor a known skeleton.
    """
    d = Path(pose3d_dir)
    npz = d / "skeletons.npz"
    arrays = read_npz(npz, {
        "joints": ArraySpec(("T", "P", "J", 3)),
        "reprojection_error_px": ArraySpec(("T", "P", "J")),
        "views_used": ArraySpec(("T", "P", "J"), kind="iuf"),
        "frame_index": ArraySpec(("T",), kind="iu"),
    })
    joints = arrays["joints"].astype(np.float64)
    J = joints.shape[2]
    meta: dict = {}
    yml = d / "pose3d.yaml"
    if yml.is_file():
        meta = read_yaml(yml, POSE3D_SCHEMA)
    skeleton = COCO17
    if meta.get("skeleton"):
        try:
            skeleton = get_skeleton(str(meta["skeleton"]))
        except Exception:  # noqa: BLE001 - an unknown skeleton name still exports with its joint names
            skeleton = None  # type: ignore[assignment]
    names = meta.get("joint_names")
    if names is not None:
        if not isinstance(names, list) or len(names) != J:
            raise ArtifactError(f"{yml}: field 'joint_names' must list {J} names (the joints in {npz})")
        names = tuple(str(n) for n in names)
    if skeleton is None or skeleton.num_joints != J:
        skeleton = next((s for s in (COCO17, get_skeleton("body25")) if s.num_joints == J), None)  # type: ignore[assignment]
        if skeleton is None:
            raise ArtifactError(
                f"{npz}: {J} joints per person, which matches no known skeleton (coco17: 17, body25: 25); "
                "write the triangulation with a known skeleton")
    settings = meta.get("settings") or {}
    fps = settings.get("fps") if isinstance(settings, dict) else None
    views = arrays["views_used"]
    views = np.where(np.isfinite(views), views, 0).astype(np.int64) if views.dtype.kind == "f" else views
    return Pose3D(
        joints=joints,
        reprojection_error_px=arrays["reprojection_error_px"].astype(np.float64),
        views_used=views.astype(np.int64),
        frame_index=arrays["frame_index"].astype(np.int64),
        skeleton=skeleton,
        joint_names=names or tuple(skeleton.joint_names),
        fps=float(fps) if isinstance(fps, (int, float)) and fps > 0 else None,
    )


def resolve_fps(param_fps: float | None, pose: Pose3D, session_fps: float | None = None) -> float:
    """The frame rate to write: the param, else session.yaml's (measured by crop), else pose3d.yaml's
    (triangulate's ``fps`` setting), else 30 with a warning."""
    for value in (param_fps, session_fps, pose.fps):
        if value is not None and value > 0:
            return float(value)
    log.warning("no frame rate in the params, session.yaml or pose3d.yaml; assuming %.0f fps", DEFAULT_FPS)
    return DEFAULT_FPS


def _axis_vector(name: str) -> np.ndarray:
    sign = -1.0 if name.startswith("-") else 1.0
    vec = np.zeros(3)
    vec["xyz".index(name[-1])] = sign
    return vec


def estimate_up(joints: np.ndarray, skeleton: Skeleton, choice: str = "auto") -> np.ndarray:
    """The world's up direction (3,), unit length.

    ``choice`` names a world axis (``"z"``, ``"-y"``, ...) or is ``"auto"``: the median over
    frames and people of the torso direction (mid-hip, else mid-ankle, to mid-shoulder), snapped
    onto the nearest world axis when within 25 degrees of it. With no usable joints, auto falls
    back to +Z (a floor-frame world) with a warning.

    Args:
        joints: (T, P, J, 3) metres, NaN where unknown.
        skeleton: the joint order of ``joints``.
        choice: one of :data:`UP_CHOICES`.
    """
    if choice not in UP_CHOICES:
        raise ValueError(f"up axis must be one of {', '.join(UP_CHOICES)}; got {choice!r}")
    if choice != "auto":
        return _axis_vector(choice)

    def centre(names: tuple[str, ...]) -> np.ndarray:
        idx = [skeleton.joint_names.index(n) for n in names if n in skeleton.joint_names]
        if not idx:
            return np.full(joints.shape[:2] + (3,), np.nan)
        return joints[:, :, idx].mean(axis=2)  # NaN when any is missing

    top = centre(("left_shoulder", "right_shoulder"))
    bottom = centre(("left_hip", "right_hip"))
    ankles = centre(("left_ankle", "right_ankle"))
    bottom = np.where(np.isfinite(bottom), bottom, ankles)
    vec = (top - bottom).reshape(-1, 3)
    vec = vec[np.isfinite(vec).all(axis=1)]
    norms = np.linalg.norm(vec, axis=1)
    vec = vec[norms > 1e-6] / norms[norms > 1e-6, None]
    if vec.shape[0] == 0:
        log.warning("cannot estimate the up direction from the skeletons; assuming +Z is up")
        return np.array([0.0, 0.0, 1.0])
    up = np.median(vec, axis=0)
    up /= np.linalg.norm(up)
    k = int(np.argmax(np.abs(up)))
    if abs(up[k]) >= SNAP_COS:
        snapped = np.zeros(3)
        snapped[k] = np.sign(up[k])
        return snapped
    return up


def rotation_to_up(up: np.ndarray, target_axis: str) -> np.ndarray:
    """The proper rotation (3, 3) taking the unit vector ``up`` onto +``target_axis`` (``"y"``, ``"z"``).

    The smallest such rotation (about ``up x target``); for ``up = -target`` a half turn about
    the first world axis perpendicular to it. ``R @ up == target``.
    """
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    target = _axis_vector(target_axis)
    axis = np.cross(up, target)
    s = float(np.linalg.norm(axis))
    c = float(np.dot(up, target))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        perp = np.eye(3)[int(np.argmin(np.abs(target)))]
        perp = perp - np.dot(perp, target) * target
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


UNIT_SCALE = {"m": 1.0, "cm": 100.0, "mm": 1000.0}


def opensim_marker_name(joint_name: str) -> str:
    """OpenPose / Pose2Sim style marker name: ``left_shoulder`` -> ``LShoulder``, ``mid_hip`` -> ``MidHip``."""
    parts = joint_name.split("_")
    if parts[0] in ("left", "right") and len(parts) > 1:
        return parts[0][0].upper() + "".join(p.capitalize() for p in parts[1:])
    return "".join(p.capitalize() for p in parts)
