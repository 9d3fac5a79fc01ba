"""BVH export: a joint hierarchy with median bone lengths and rotations solved per frame.

One file per person, Y up, the character facing +Z in the rest pose (a T-pose: legs down, arms
out along ±X). The hierarchy for COCO-17 (other skeletons are mapped onto COCO-17 by joint
name first), with the COCO joint each BVH joint sits on::

    Hips            mid-hip (root: position + rotation)
      LeftUpLeg     left_hip     -> LeftLeg (left_knee) -> LeftFoot (left_ankle) -> End Site
      RightUpLeg    right_hip    -> RightLeg -> RightFoot -> End Site
      Spine         mid-hip      (zero offset: turns the torso independently of the pelvis)
        Neck        mid-shoulder
          LeftArm   left_shoulder -> LeftForeArm (left_elbow) -> LeftHand (left_wrist) -> End Site
          RightArm  right_shoulder -> RightForeArm -> RightHand -> End Site
          Head      mid-shoulder  (zero offset: turns the head independently of the shoulders)
            Nose    nose -> LeftEye -> LeftEar -> End Site; RightEye -> RightEar -> End Site

Bone lengths are the medians over the frames where both ends are known. Rotations, as global
rotations ``G`` (``position(child) = position(joint) + G_joint @ offset(child)``):

- Hips and Neck: the frame whose X axis is the left-right axis (right -> left hip / shoulder) and
  whose Y axis is the torso (mid-hip -> mid-shoulder) made orthogonal to it;
- Nose: the rotation that best maps the rest eye offsets onto the current ones (Kabsch);
- every other joint with a child: the smallest rotation turning the child's rest direction (as
  the parent's rotation carries it) onto its current direction;
- end joints: their parent's rotation.

So forward kinematics reproduces every joint exactly when the bone lengths (and the face
triangle) are rigid; otherwise a joint is off by its bones' deviation from the median length.
Local rotations ``G_parent^T G_joint`` are written as Euler angles (degrees) in the channel
order (``ZXY`` by default: ``R = Rz @ Rx @ Ry``). Where a joint cannot be solved in a frame
(missing keypoints) its last solved local rotation is held (the next one before the first);
frames outside the person's first..last appearance are left out.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.artifacts import write_bytes
from pipeline.skeleton import COCO17

ROTATION_ORDERS = ("ZXY", "XYZ", "XZY", "YXZ", "YZX", "ZYX")


@dataclass(frozen=True)
class BvhJoint:
    """One joint of the hierarchy.

    Attributes:
        name: BVH joint name.
        source: COCO-17 joint names whose mean is the joint's position.
        parent: parent joint name (None for the root).
        rest_dir: unit direction of the offset from the parent in the rest pose (None: zero offset).
        solve: how its rotation is found: ``"frame"``, ``"kabsch"``, ``"swing"`` or ``"end"``.
    """

    name: str
    source: tuple[str, ...]
    parent: str | None
    rest_dir: tuple[float, float, float] | None
    solve: str


_S = 1.0 / np.sqrt(2.0)

COCO_TREE: tuple[BvhJoint, ...] = (
    BvhJoint("Hips", ("left_hip", "right_hip"), None, None, "frame"),
    BvhJoint("LeftUpLeg", ("left_hip",), "Hips", (1.0, 0.0, 0.0), "swing"),
    BvhJoint("LeftLeg", ("left_knee",), "LeftUpLeg", (0.0, -1.0, 0.0), "swing"),
    BvhJoint("LeftFoot", ("left_ankle",), "LeftLeg", (0.0, -1.0, 0.0), "end"),
    BvhJoint("RightUpLeg", ("right_hip",), "Hips", (-1.0, 0.0, 0.0), "swing"),
    BvhJoint("RightLeg", ("right_knee",), "RightUpLeg", (0.0, -1.0, 0.0), "swing"),
    BvhJoint("RightFoot", ("right_ankle",), "RightLeg", (0.0, -1.0, 0.0), "end"),
    BvhJoint("Spine", ("left_hip", "right_hip"), "Hips", None, "swing"),
    BvhJoint("Neck", ("left_shoulder", "right_shoulder"), "Spine", (0.0, 1.0, 0.0), "frame"),
    BvhJoint("LeftArm", ("left_shoulder",), "Neck", (1.0, 0.0, 0.0), "swing"),
    BvhJoint("LeftForeArm", ("left_elbow",), "LeftArm", (1.0, 0.0, 0.0), "swing"),
    BvhJoint("LeftHand", ("left_wrist",), "LeftForeArm", (1.0, 0.0, 0.0), "end"),
    BvhJoint("RightArm", ("right_shoulder",), "Neck", (-1.0, 0.0, 0.0), "swing"),
    BvhJoint("RightForeArm", ("right_elbow",), "RightArm", (-1.0, 0.0, 0.0), "swing"),
    BvhJoint("RightHand", ("right_wrist",), "RightForeArm", (-1.0, 0.0, 0.0), "end"),
    BvhJoint("Head", ("left_shoulder", "right_shoulder"), "Neck", None, "swing"),
    BvhJoint("Nose", ("nose",), "Head", (0.0, 0.8, 0.6), "kabsch"),
    BvhJoint("LeftEye", ("left_eye",), "Nose", None, "swing"),  # rest offset from the face triangle
    BvhJoint("LeftEar", ("left_ear",), "LeftEye", (_S, 0.0, -_S), "end"),
    BvhJoint("RightEye", ("right_eye",), "Nose", None, "swing"),
    BvhJoint("RightEar", ("right_ear",), "RightEye", (-_S, 0.0, -_S), "end"),
)
"""The COCO-17 hierarchy, parents before children."""

BVH_JOINT_OF = {j.source[0]: j.name for j in COCO_TREE if len(j.source) == 1}
"""COCO-17 joint name -> the BVH joint placed on it."""

END_SITE_FRACTION = 0.3
"""An End Site continues its joint's bone by this fraction of the bone's length."""


@dataclass(frozen=True)
class BvhMotion:
    """A solved hierarchy: rest ``offsets`` (name -> (3,)), ``end_sites`` (name -> (3,)),
    ``root_position`` (F, 3), ``local_rotations`` (name -> (F, 3, 3)) and ``frame_time`` s."""

    offsets: dict[str, np.ndarray]
    end_sites: dict[str, np.ndarray]
    root_position: np.ndarray
    local_rotations: dict[str, np.ndarray]
    frame_time: float


# ---- batched rotation helpers ---------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1e-12, v / n, np.nan)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (..., 3, 3) taking unit vectors ``a`` (..., 3) onto ``b`` (..., 3).

    ``R = I + [v]x + [v]x^2 / (1 + c)`` with ``v = a x b``, ``c = a . b``; opposite vectors get a
    half turn about an axis perpendicular to ``a``. NaN in, NaN out.
    """
    a, b = _unit(a), _unit(b)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    zero = np.zeros_like(c)
    vx = np.stack([np.stack([zero, -v[..., 2], v[..., 1]], -1),
                   np.stack([v[..., 2], zero, -v[..., 0]], -1),
                   np.stack([-v[..., 1], v[..., 0], zero], -1)], -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.eye(3) + vx + (vx @ vx) / (1.0 + c)[..., None, None]
    opposite = c < -1.0 + 1e-9
    if np.any(opposite):
        ao = a[opposite]
        helper = np.where(np.abs(ao[:, :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        axis = _unit(np.cross(ao, helper))
        R[opposite] = 2.0 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    return R


def frame_from_axes(x_dir: np.ndarray, y_hint: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) with columns X = ``x_dir``, Y = ``y_hint`` made orthogonal to X, Z = X x Y."""
    x = _unit(x_dir)
    y = _unit(y_hint - np.sum(y_hint * x, axis=-1, keepdims=True) * x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def kabsch(rest: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) minimising sum_i |R rest_i - actual_t,i|^2.

    Args:
        rest: (N, 3) offsets in the rest pose.
        actual: (T, N, 3) current offsets; frames with NaN give NaN.
    """
    H = np.einsum("ni,tnj->tij", rest, np.nan_to_num(actual))  # sum rest_i actual_i^T
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(H)
    D[:, 0, 0] = 1.0
    D[:, 1, 1] = 1.0
    D[:, 2, 2] = d
    R = np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)
    R[~np.isfinite(actual).all(axis=(1, 2))] = np.nan
    return R


def _fill(rot: np.ndarray) -> np.ndarray:
    """Hold the last finite rotation (F, 3, 3) over NaN frames; the first finite one before it; else identity."""
    ok = np.isfinite(rot).all(axis=(1, 2))
    if not ok.any():
        return np.broadcast_to(np.eye(3), rot.shape).copy()
    idx = np.where(ok, np.arange(len(ok)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.flatnonzero(ok)[0])
    return rot[idx]


# ---- solving ------------------------------------------------------------------------------

def _median_length(vec: np.ndarray) -> float:
    n = np.linalg.norm(vec, axis=-1)
    n = n[np.isfinite(n)]
    return float(np.median(n)) if n.size else 0.0


def solve_bvh(points: np.ndarray, joint_names: Sequence[str], frame_time: float) -> BvhMotion:
    """Fit the COCO-17 hierarchy to one person's trajectory.

    Args:
        points: (F, J, 3) joint positions, Y up, output units; NaN where unknown.
        joint_names: J names including every COCO-17 joint.
        frame_time: seconds per frame.
    """
    idx = {n: i for i, n in enumerate(joint_names)}
    missing = [n for n in COCO17.joint_names if n not in idx]
    if missing:
        raise ValueError(f"BVH export needs the COCO-17 joints; missing {', '.join(missing)}")
    F = points.shape[0]
    pos = {j.name: points[:, [idx[s] for s in j.source]].mean(axis=1) for j in COCO_TREE}
    children: dict[str, list[str]] = {j.name: [] for j in COCO_TREE}
    for j in COCO_TREE:
        if j.parent:
            children[j.parent].append(j.name)

    lengths = {j.name: _median_length(pos[j.name] - pos[j.parent]) if j.parent and j.rest_dir is not None else 0.0
               for j in COCO_TREE}
    lengths["LeftEye"] = _median_length(pos["LeftEye"] - pos["Nose"])
    lengths["RightEye"] = _median_length(pos["RightEye"] - pos["Nose"])
    offsets = {j.name: (np.asarray(j.rest_dir) / np.linalg.norm(j.rest_dir) * lengths[j.name]
                        if j.rest_dir is not None else np.zeros(3)) for j in COCO_TREE}
    # rest face: eyes on a line along X, above and behind the nose, with the median triangle sides
    d1, d2 = lengths["LeftEye"], lengths["RightEye"]
    d3 = _median_length(pos["LeftEye"] - pos["RightEye"])
    a = (d1 * d1 - d2 * d2 + d3 * d3) / (2.0 * d3) if d3 > 0 else 0.0
    b = float(np.sqrt(max(d1 * d1 - a * a, 0.0)))
    u = np.array([0.0, 1.0, -0.5]) / np.linalg.norm([0.0, 1.0, -0.5])
    offsets["LeftEye"] = np.array([a, 0.0, 0.0]) + b * u
    offsets["RightEye"] = np.array([a - d3, 0.0, 0.0]) + b * u

    end_sites = {}
    for j in COCO_TREE:
        if j.solve == "end":
            off = offsets[j.name]
            end_sites[j.name] = END_SITE_FRACTION * off if np.linalg.norm(off) > 0 else np.array([0.0, 1.0, 0.0])

    up_hint = pos["Neck"] - pos["Hips"]
    up_hint = np.where(np.isfinite(up_hint), up_hint, np.array([0.0, 1.0, 0.0]))
    G: dict[str, np.ndarray] = {}
    local: dict[str, np.ndarray] = {}
    eye3 = np.broadcast_to(np.eye(3), (F, 3, 3))
    for j in COCO_TREE:
        parent_G = G[j.parent] if j.parent else eye3
        if j.solve == "frame":
            if j.name == "Hips":
                x_dir = pos["LeftUpLeg"] - pos["RightUpLeg"]
            else:
                x_dir = pos["LeftArm"] - pos["RightArm"]
            g = frame_from_axes(x_dir, up_hint)
        elif j.solve == "kabsch":
            kids = children[j.name]
            rest = np.stack([offsets[k] for k in kids])
            actual = np.stack([pos[k] - pos[j.name] for k in kids], axis=1)
            g = kabsch(rest, actual)
        elif j.solve == "swing":
            kid = children[j.name][0]  # swing joints have exactly one child
            rest_world = np.einsum("tij,j->ti", parent_G, offsets[kid])
            g = rotation_between(rest_world, pos[kid] - pos[j.name]) @ parent_G
        else:  # end joint: no child to aim
            g = parent_G
        loc = _fill(np.swapaxes(parent_G, -1, -2) @ g)
        local[j.name] = loc
        G[j.name] = parent_G @ loc
    root = pos["Hips"].copy()
    ok = np.isfinite(root).all(axis=1)
    if ok.any():
        idx_fill = np.maximum.accumulate(np.where(ok, np.arange(F), -1))
        idx_fill[idx_fill < 0] = int(np.flatnonzero(ok)[0])
        root = root[idx_fill]
    else:
        root = np.zeros((F, 3))
    return BvhMotion(offsets, end_sites, root, local, frame_time)


# ---- writing ------------------------------------------------------------------------------

_AXIS_CHANNEL = {"X": "Xrotation", "Y": "Yrotation", "Z": "Zrotation"}


def format_bvh(motion: BvhMotion, rotation_order: str = "ZXY", decimals: int = 6) -> str:
    """Render a solved motion as BVH text (hierarchy + motion)."""
    if rotation_order not in ROTATION_ORDERS:
        raise ValueError(f"rotation order must be one of {', '.join(ROTATION_ORDERS)}; got {rotation_order!r}")
    rot_channels = " ".join(_AXIS_CHANNEL[a] for a in rotation_order)
    children: dict[str | None, list[BvhJoint]] = {}
    for j in COCO_TREE:
        children.setdefault(j.parent, []).append(j)
    out = io.StringIO()
    out.write("HIERARCHY\n")
    order: list[str] = []

    def fmt(v: np.ndarray) -> str:
        return " ".join(f"{x:.{decimals}f}" for x in v)

    def emit(j: BvhJoint, depth: int) -> None:
        pad = "  " * depth
        out.write(f"{pad}{'ROOT' if j.parent is None else 'JOINT'} {j.name}\n{pad}{{\n")
        out.write(f"{pad}  OFFSET {fmt(motion.offsets[j.name])}\n")
        if j.parent is None:
            out.write(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}\n")
        else:
            out.write(f"{pad}  CHANNELS 3 {rot_channels}\n")
        order.append(j.name)
        kids = children.get(j.name, [])
        for k in kids:
            emit(k, depth + 1)
        if not kids:
            out.write(f"{pad}  End Site\n{pad}  {{\n{pad}    OFFSET {fmt(motion.end_sites[j.name])}\n{pad}  }}\n")
        out.write(f"{pad}}}\n")

    emit(children[None][0], 0)
    F = motion.root_position.shape[0]
    out.write(f"MOTION\nFrames: {F}\nFrame Time: {motion.frame_time:.8f}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gimbal lock: the angles still compose to the same matrix
        eulers = [Rotation.from_matrix(motion.local_rotations[n]).as_euler(rotation_order, degrees=True)
                  for n in order]
    table = np.concatenate([motion.root_position] + eulers, axis=1)
    text = np.char.mod(f"%.{decimals}f", table)
    for row in text:
        out.write(" ".join(row) + "\n")
    return out.getvalue()


def write_bvh(path: str | os.PathLike, points: np.ndarray, joint_names: Sequence[str], frame_time: float,
              rotation_order: str = "ZXY") -> BvhMotion:
    """Solve and write one person's BVH atomically; returns the solved motion.

    Args:
        points: (F, J, 3) positions, Y up, in the output units; NaN where unknown.
        joint_names: J joint names (every COCO-17 joint must be among them).
        frame_time: seconds per frame.
        rotation_order: Euler channel order, one of :data:`ROTATION_ORDERS`.
    """
    motion = solve_bvh(points, joint_names, frame_time)
    write_bytes(path, format_bvh(motion, rotation_order).encode("utf-8"))
    return motion
