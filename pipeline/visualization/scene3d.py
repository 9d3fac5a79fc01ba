"""The 3D scene as open3d geometry: floor grid, camera frusta, skeletons with trails.

Geometry is built from plain numpy first (:func:`grid_lines`, :func:`frustum_lines`,
:func:`skeleton_lines`, :func:`trail_lines`: points, line index pairs and RGB colours in [0, 1]),
then wrapped as ``open3d.geometry.LineSet`` by :func:`lineset`, so the offscreen renderer and the
interactive viewer draw exactly the same scene. All positions are world metres.

:class:`SceneLayout` says where the floor is: a plane perpendicular to the world's up direction
(estimated from the skeletons, see :func:`pipeline.export.pose3d.estimate_up`), at height 0 when
the rig's world is a floor frame with an axis up, else just under the lowest ankles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.export.pose3d import estimate_up
from pipeline.geometry.rig import Rig
from pipeline.skeleton import Skeleton
from pipeline.visualization.draw import person_rgb

BACKGROUND_RGB = (1.0, 1.0, 1.0)
GRID_RGB = (0.72, 0.72, 0.75)
FRUSTUM_RGB = (0.15, 0.15, 0.2)
TRAIL_JOINTS = ("nose", "left_wrist", "right_wrist", "left_ankle", "right_ankle")
ANKLE_CLEARANCE_M = 0.08


@dataclass(frozen=True)
class SceneLayout:
    """Where things are.

    Attributes:
        up: (3,) unit world up direction.
        floor_height: height of the floor along ``up``, metres.
        center: (3,) centre of the action, on the floor.
        radius: radius of a sphere around ``center`` holding the people and the cameras, metres.
        horizontal: (2, 3) two unit vectors spanning the floor plane (``horizontal[0] x horizontal[1] = up``).
        frame_points: (N, 3) points a render should keep in view: the cameras and the corners of
            the box holding the people over the whole take (their feet on the floor).
    """

    up: np.ndarray
    floor_height: float
    center: np.ndarray
    radius: float
    horizontal: np.ndarray
    frame_points: np.ndarray


def scene_layout(rig: Rig, joints: np.ndarray, skeleton: Skeleton, up_axis: str = "auto") -> SceneLayout:
    """Lay out the scene from the rig and the skeletons (T, P, J, 3) metres (NaN unknown)."""
    up = estimate_up(joints, skeleton, up_axis)
    pts = joints.reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    cams = np.stack([c.center_world for c in rig.cameras])
    ankles = [skeleton.joint_names.index(n) for n in ("left_ankle", "right_ankle") if n in skeleton.joint_names]
    feet = joints[:, :, ankles].reshape(-1, 3) if ankles else pts
    feet = feet[np.isfinite(feet).all(axis=1)]
    axis_up = np.isclose(np.abs(up).max(), 1.0)
    if "floor" in rig.world.lower() and axis_up:
        floor = 0.0
    elif feet.size:
        floor = float(np.percentile(feet @ up, 2)) - ANKLE_CLEARANCE_M
    elif pts.size:
        floor = float((pts @ up).min())
    else:
        floor = float((cams @ up).min()) - 1.5
    focus = pts.mean(axis=0) if pts.size else cams.mean(axis=0)
    center = focus - (focus @ up - floor) * up
    every = np.concatenate([pts, cams]) if pts.size else cams
    radius = float(np.max(np.linalg.norm(every - center, axis=1))) if every.size else 3.0
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = helper - (helper @ up) * up
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    basis = np.stack([e1, e2, up])
    if pts.size:
        local = (pts - center) @ basis.T
        lo, hi = local.min(axis=0), local.max(axis=0)
        lo[2] = min(lo[2], 0.0)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        frame_points = np.concatenate([cams, center + corners @ basis])
    else:
        frame_points = np.concatenate([cams, center[None]])
    return SceneLayout(up=up, floor_height=floor, center=center, radius=max(radius, 0.5),
                       horizontal=np.stack([e1, e2]), frame_points=frame_points)


Lines = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(points (N, 3), line index pairs (L, 2) int, colours (L, 3) in [0, 1])."""


def grid_lines(layout: SceneLayout, spacing: float | None = None) -> Lines:
    """A square floor grid around ``layout.center``, ``spacing`` metres apart (0.5 m or 1 m by size)."""
    half = layout.radius
    spacing = spacing or (0.5 if half <= 6 else 1.0)
    n = int(np.ceil(half / spacing))
    ticks = np.arange(-n, n + 1) * spacing
    e1, e2 = layout.horizontal
    c = layout.center
    a = np.concatenate([c + t * e1 + ticks[0] * e2 for t in ticks] + [c + ticks[0] * e1 + t * e2 for t in ticks])
    b = np.concatenate([c + t * e1 + ticks[-1] * e2 for t in ticks] + [c + ticks[-1] * e1 + t * e2 for t in ticks])
    a, b = a.reshape(-1, 3), b.reshape(-1, 3)
    pts = np.concatenate([a, b])
    m = a.shape[0]
    idx = np.stack([np.arange(m), np.arange(m) + m], axis=1)
    return pts, idx, np.tile(GRID_RGB, (m, 1))


def frustum_lines(rig: Rig, depth_m: float, color: Sequence[float] = FRUSTUM_RGB) -> Lines:
    """Every camera's viewing pyramid: apex at its centre, base = its image corners at ``depth_m``.

    The corners are unprojected through K (pixel -0.5 .. size - 0.5), ignoring lens distortion.
    """
    pts, idx = [], []
    for cam in rig.cameras:
        w, h = cam.image_size
        corners = np.array([[-0.5, -0.5, 1.0], [w - 0.5, -0.5, 1.0], [w - 0.5, h - 0.5, 1.0], [-0.5, h - 0.5, 1.0]])
        rays = corners @ np.linalg.inv(cam.K).T  # normalized, z = 1
        base_cam = rays * depth_m
        base = (base_cam - cam.t) @ cam.R  # R^T (X - t)
        o = sum(len(p) for p in pts)
        pts.append(np.concatenate([cam.center_world[None], base]))
        idx += [[o, o + 1], [o, o + 2], [o, o + 3], [o, o + 4],
                [o + 1, o + 2], [o + 2, o + 3], [o + 3, o + 4], [o + 4, o + 1]]
        # a small triangle on the top edge marks the image's "up"
        top = (base[0] + base[1]) / 2
        up_cam = -(cam.R[1])  # image -y in world
        pts.append(np.stack([base[0] * 0.7 + base[1] * 0.3, base[0] * 0.3 + base[1] * 0.7,
                             top + up_cam * depth_m * 0.15]))
        q = o + 5
        idx += [[q, q + 1], [q + 1, q + 2], [q + 2, q]]
    p = np.concatenate(pts)
    i = np.asarray(idx, dtype=np.int32)
    return p, i, np.tile(np.asarray(color, dtype=np.float64), (len(i), 1))


def skeleton_lines(joints: np.ndarray, limbs: Sequence[tuple[int, int]], rgb: Sequence[float]) -> Lines:
    """One person's limbs (J, 3) metres, only those whose both ends are known."""
    ok = np.isfinite(joints).all(axis=1)
    pairs = np.array([(a, b) for a, b in limbs if ok[a] and ok[b]], dtype=np.int32).reshape(-1, 2)
    pts = np.where(ok[:, None], joints, 0.0)
    return pts, pairs, np.tile(np.asarray(rgb, dtype=np.float64), (len(pairs), 1))


def trail_lines(history: np.ndarray, rgb: Sequence[float], background: Sequence[float] = BACKGROUND_RGB) -> Lines:
    """Trails of a few joints over the last frames.

    Args:
        history: (H, K, 3) positions of K joints over H frames, oldest first; NaN unknown.
        rgb: the person's colour; older segments fade towards ``background``.
    """
    H, K, _ = history.shape
    if H < 2:
        return np.zeros((0, 3)), np.zeros((0, 2), np.int32), np.zeros((0, 3))
    ok = np.isfinite(history).all(axis=2)
    pts = np.where(ok[..., None], history, 0.0).reshape(-1, 3)
    seg_ok = ok[:-1] & ok[1:]  # (H-1, K)
    h_idx, k_idx = np.nonzero(seg_ok)
    a = h_idx * K + k_idx
    pairs = np.stack([a, a + K], axis=1).astype(np.int32)
    age = (H - 2 - h_idx) / max(H - 1, 1)  # 0 = newest segment
    fade = 0.25 + 0.7 * age  # never fully the person's colour, so a trail never passes for a limb
    c = np.asarray(rgb, dtype=np.float64)
    bg = np.asarray(background, dtype=np.float64)
    colors = c[None] * (1 - fade[:, None]) + bg[None] * fade[:, None]
    return pts, pairs, colors


def person_color(p: int) -> tuple[float, float, float]:
    """Identity colour of person ``p``, RGB in [0, 1]."""
    return tuple(c / 255.0 for c in person_rgb(p))  # type: ignore[return-value]


def trail_joint_indices(skeleton: Skeleton) -> list[int]:
    """Indices of :data:`TRAIL_JOINTS` present in ``skeleton``."""
    return [skeleton.joint_names.index(n) for n in TRAIL_JOINTS if n in skeleton.joint_names]


def lineset(lines: Lines):
    """An ``open3d.geometry.LineSet`` from :data:`Lines` (None when there are no lines)."""
    import open3d as o3d

    pts, idx, colors = lines
    if len(idx) == 0:
        return None
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.asarray(pts, dtype=np.float64)),
                              o3d.utility.Vector2iVector(np.asarray(idx, dtype=np.int32)))
    ls.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
    return ls


def joint_points(joints: np.ndarray, rgb: Sequence[float]):
    """An ``open3d.geometry.PointCloud`` of the known joints (J, 3), or None."""
    import open3d as o3d

    ok = np.isfinite(joints).all(axis=1)
    if not ok.any():
        return None
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(joints[ok].astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(np.tile(np.asarray(rgb, dtype=np.float64), (int(ok.sum()), 1)))
    return pc


def frame_geometry(joints_t: np.ndarray, history: np.ndarray, limbs, trail_idx: Sequence[int],
                   background: Sequence[float] = BACKGROUND_RGB) -> list[tuple[str, object, str]]:
    """The per-frame geometry: ``(name, geometry, kind)`` with kind ``"line"`` or ``"point"``.

    Args:
        joints_t: (P, J, 3) this frame's joints.
        history: (H, P, J, 3) the last H frames up to and including this one (for trails).
        limbs: joint pairs to draw.
        trail_idx: joints that leave trails.
    """
    out = []
    for p in range(joints_t.shape[0]):
        rgb = person_color(p)
        sk = lineset(skeleton_lines(joints_t[p], limbs, rgb))
        if sk is not None:
            out.append((f"person{p}", sk, "line"))
            pc = joint_points(joints_t[p], rgb)
            if pc is not None:
                out.append((f"person{p}_joints", pc, "point"))
        if trail_idx and history.shape[0] >= 2:
            tr = lineset(trail_lines(history[:, p][:, list(trail_idx)], rgb, background))
            if tr is not None:
                out.append((f"trail{p}", tr, "trail"))
    return out
