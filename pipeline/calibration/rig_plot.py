"""Pictures of a calibrated rig: a PNG (top and side views of the camera frusta) and an open3d LineSet.

A frustum is the camera centre joined to the four image corners' viewing rays cut at a depth of
``depth_m``. The rays are the pinhole ones (``K^-1 [u, v, 1]``, distortion ignored): a strong
distortion model extrapolated to the image corners can diverge, and the picture only needs the
field of view roughly.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.errors import ArtifactError
from pipeline.geometry.rig import Rig

PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (120, 120, 120)]  # RGB, colour-blind safe (Okabe-Ito)


def frusta(rig: Rig, depth_m: float) -> np.ndarray:
    """Frustum points per camera: (C, 5, 3) world metres: centre, then the image corners at ``depth_m``."""
    out = []
    for cam in rig.cameras:
        w, h = cam.image_size
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        rays = np.linalg.solve(cam.K, np.concatenate([corners, np.ones((4, 1))], axis=1).T).T * depth_m
        pts = (rays - cam.t) @ cam.R  # R^T (X_cam - t)
        out.append(np.concatenate([cam.center_world[None], pts]))
    return np.stack(out)


def default_depth(rig: Rig) -> float:
    """A frustum depth that reads well: a fifth of the rig's extent (0.2 m at least)."""
    c = rig.centers
    extent = float(np.max(np.ptp(c, axis=0))) if len(c) > 1 else 1.0
    return max(0.2, 0.2 * extent)


FRUSTUM_EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)]


def view_axes(rig: Rig) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The two panels' (right, up) world directions and labels.

    A floor world (z up) gives a top view (x, y) and a side view (x, z); a camera's world (x right,
    y down, z forward) gives a top view (x, z) and a side view (z, -y).
    """
    e = np.eye(3)
    if rig.world.startswith("cam") or rig.world in {c.name for c in rig.cameras}:
        return [(e[0], e[2], "top view (x right, z forward)"), (e[2], -e[1], "side view (z right, -y up)")]
    return [(e[0], e[1], "top view (x right, y up)"), (e[0], e[2], "side view (x right, z up)")]


def draw_rig(rig: Rig, points_world: np.ndarray | None = None, size: tuple[int, int] = (1200, 600),
             depth_m: float | None = None, title: str = "") -> np.ndarray:
    """Top and side views of the cameras' frusta side by side (see :func:`view_axes`): uint8 BGR (H, W, 3).

    Args:
        rig: the cameras.
        points_world: optional (P, 3) points drawn as dots (e.g. board positions).
        size: (width, height) of the picture.
        depth_m: frustum depth (default :func:`default_depth`).
        title: text at the top.
    """
    depth_m = default_depth(rig) if depth_m is None else depth_m
    fr = frusta(rig, depth_m)
    extra = np.zeros((0, 3)) if points_world is None else np.asarray(points_world, np.float64).reshape(-1, 3)
    pts = np.concatenate([fr.reshape(-1, 3), extra, np.zeros((1, 3))])
    W, H = size
    canvas = np.full((H, W, 3), 255, np.uint8)
    panel_w = W // 2
    top = 30
    for p, (right, up, label) in enumerate(view_axes(rig)):
        x0 = p * panel_w
        uv = np.stack([pts @ right, pts @ up], axis=1)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        span = float(np.max(hi - lo)) or 1.0
        margin = 40
        scale = (min(panel_w, H - top) - 2 * margin) / span
        mid = (lo + hi) / 2

        def to_px(xyz: np.ndarray, right: np.ndarray = right, up: np.ndarray = up, x0: int = x0,
                  scale: float = scale, mid: np.ndarray = mid) -> np.ndarray:
            u = x0 + panel_w / 2 + (xyz @ right - mid[0]) * scale
            v = top + (H - top) / 2 - (xyz @ up - mid[1]) * scale
            return np.stack([u, v], axis=-1)

        origin = to_px(np.zeros(3))
        step = scale  # 1 m grid
        for k in range(-40, 41):
            gx, gy = int(round(origin[0] + k * step)), int(round(origin[1] + k * step))
            if x0 <= gx < x0 + panel_w:
                cv2.line(canvas, (gx, top), (gx, H - 1), (235, 235, 235), 1)
            if top <= gy < H:
                cv2.line(canvas, (x0, gy), (x0 + panel_w - 1, gy), (235, 235, 235), 1)
        cv2.drawMarker(canvas, tuple(int(v) for v in origin), (0, 0, 0), cv2.MARKER_CROSS, 12, 1)
        for q in to_px(extra):
            cv2.circle(canvas, (int(q[0]), int(q[1])), 2, (150, 150, 150), -1, cv2.LINE_AA)
        for c, cam in enumerate(rig.cameras):
            r, g, b = PALETTE[c % len(PALETTE)]
            px = to_px(fr[c])
            for i, j in FRUSTUM_EDGES:
                cv2.line(canvas, tuple(int(v) for v in px[i]), tuple(int(v) for v in px[j]), (b, g, r), 2, cv2.LINE_AA)
            cv2.putText(canvas, cam.name, (int(px[0, 0]) + 5, int(px[0, 1]) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (b // 2, g // 2, r // 2), 1, cv2.LINE_AA)
        cv2.putText(canvas, label + ", grid 1 m", (x0 + 8, top + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1,
                    cv2.LINE_AA)
        if p:
            cv2.line(canvas, (x0, top), (x0, H - 1), (180, 180, 180), 1)
    cv2.putText(canvas, title or f"rig: {len(rig)} cameras, world {rig.world}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX,
                0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a PNG atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise ArtifactError(f"{path}: OpenCV could not write the PNG")


def line_set_arrays(rig: Rig, depth_m: float | None = None,
                    axis_m: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (P, 3), lines (L, 2) and RGB colours in [0, 1] (L, 3) of the frusta plus the world axes."""
    depth_m = default_depth(rig) if depth_m is None else depth_m
    fr = frusta(rig, depth_m)
    points, lines, colours = [], [], []
    for c in range(len(rig)):
        base = 5 * c
        points.append(fr[c])
        lines += [(base + i, base + j) for i, j in FRUSTUM_EDGES]
        colours += [np.array(PALETTE[c % len(PALETTE)]) / 255.0] * len(FRUSTUM_EDGES)
    base = 5 * len(rig)
    points.append(np.array([[0, 0, 0], [axis_m, 0, 0], [0, axis_m, 0], [0, 0, axis_m]], float))
    lines += [(base, base + 1), (base, base + 2), (base, base + 3)]
    colours += [np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])]
    return np.concatenate(points), np.asarray(lines, np.int64), np.asarray(colours, np.float64)


def write_line_set(path: str | os.PathLike, rig: Rig, depth_m: float | None = None) -> None:
    """Write the frusta and world axes as an open3d LineSet (``.ply``), atomically.

    Read it back with ``open3d.io.read_line_set(path)``.
    """
    import open3d as o3d

    pts, lines, colours = line_set_arrays(rig, depth_m)
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(pts), o3d.utility.Vector2iVector(lines))
    ls.colors = o3d.utility.Vector3dVector(colours)
    with atomic_path(path) as tmp:
        if not o3d.io.write_line_set(str(tmp), ls, write_ascii=True):
            raise ArtifactError(f"{path}: open3d could not write the line set")
