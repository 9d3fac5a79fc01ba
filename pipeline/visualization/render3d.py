"""Offscreen 3D renders with open3d: an MP4 of the scene and a PNG of chosen frames.

The virtual camera is a :class:`pipeline.geometry.camera.Camera` (no distortion) handed to
open3d's ``setup_camera(K, [R|t], w, h)``, so any world point can be projected with
``Camera.project`` to the pixel where it is drawn (the tests do exactly that). It looks at the
centre of the action from ``elevation_deg`` above the floor, far enough back that the people and
the camera frusta fit; ``orbit`` turns it about the up axis as the video plays.

Materials are unlit and post-processing is off, so a line is drawn in exactly its colour.
Headless rendering in open3d 0.20 needs Vulkan (Debian: ``libvulkan1``, ``mesa-vulkan-drivers``,
``libusb-1.0-0``); without it :func:`open_renderer` raises a one-line :class:`PosecapError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.errors import PosecapError
from pipeline.export.pose3d import Pose3D
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig
from pipeline.visualization.draw import VideoSink, grid_columns, put_label, tile_grid, write_png
from pipeline.visualization.scene3d import (
    BACKGROUND_RGB,
    SceneLayout,
    frame_geometry,
    frustum_lines,
    grid_lines,
    lineset,
    person_color,
    trail_joint_indices,
)

log = logging.getLogger("posecap")


@dataclass(frozen=True)
class RenderOptions:
    """Offscreen render settings.

    Attributes:
        size: (width, height) of the renders, px.
        orbit: turn the virtual camera about the up axis (else it stays fixed).
        orbit_deg_per_s: orbit speed, degrees per second of video.
        azimuth_deg: the virtual camera's start direction around the up axis, relative to the
            mean direction of the real cameras.
        elevation_deg: how far above the floor plane the virtual camera looks down from.
        fov_deg: horizontal field of view.
        trail_frames: frames of history in the trails (0 = no trails).
        line_width: skeleton line width, px.
        point_size: joint dot size, px.
        labels: write camera and person labels on the render.
    """

    size: tuple[int, int] = (960, 540)
    orbit: bool = False
    orbit_deg_per_s: float = 20.0
    azimuth_deg: float = 30.0
    elevation_deg: float = 25.0
    fov_deg: float = 55.0
    trail_frames: int = 15
    line_width: float = 4.0
    point_size: float = 8.0
    labels: bool = True


def look_at_camera(eye: np.ndarray, target: np.ndarray, up: np.ndarray, size: tuple[int, int],
                   fov_deg: float) -> Camera:
    """A distortion-free OpenCV camera at ``eye`` looking at ``target`` with ``up`` up in the image."""
    w, h = size
    f = 0.5 * w / np.tan(np.deg2rad(fov_deg) / 2)
    K = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up
        x = np.cross(z, np.eye(3)[int(np.argmin(np.abs(z)))])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return Camera("virtual", (w, h), K, np.zeros(5), R, -R @ eye)


def _fit_distance(layout: SceneLayout, target: np.ndarray, direction: np.ndarray, opts: RenderOptions) -> float:
    """How far back along ``direction`` the camera must be for ``layout.frame_points`` to fit (6% margin)."""
    w, h = opts.size
    tan_x = np.tan(np.deg2rad(opts.fov_deg) / 2) * 0.94
    tan_y = tan_x * h / w
    probe = look_at_camera(target + direction, target, layout.up, opts.size, opts.fov_deg)
    d = (layout.frame_points - target) @ probe.R.T  # camera-aligned offsets; z along the view
    return max(float(np.max(np.maximum(np.abs(d[:, 0]) / tan_x, np.abs(d[:, 1]) / tan_y) - d[:, 2])), 0.5)


def virtual_camera(layout: SceneLayout, rig: Rig, opts: RenderOptions, t_s: float = 0.0) -> Camera:
    """The render camera at time ``t_s`` seconds into the video.

    It looks at a point 1 m above the floor centre (less in a small scene), from azimuth
    ``azimuth_deg`` (+ the orbit) relative to the real cameras' mean direction and elevation
    ``elevation_deg``, just far enough back that ``layout.frame_points`` fit with a 6% margin;
    an orbiting camera keeps the distance that fits from every azimuth, so it does not zoom.
    """
    e1, e2 = layout.horizontal
    mean_dir = np.mean([c.center_world - layout.center for c in rig.cameras], axis=0)
    base_az = float(np.arctan2(mean_dir @ e2, mean_dir @ e1)) if np.linalg.norm(mean_dir) > 1e-9 else 0.0
    az = base_az + np.deg2rad(opts.azimuth_deg + (opts.orbit_deg_per_s * t_s if opts.orbit else 0.0))
    el = np.deg2rad(opts.elevation_deg)
    target = layout.center + layout.up * min(1.0, layout.radius * 0.3)

    def direction(a: float) -> np.ndarray:
        return np.cos(el) * (np.cos(a) * e1 + np.sin(a) * e2) + np.sin(el) * layout.up

    if opts.orbit:
        dist = max(_fit_distance(layout, target, direction(a), opts) for a in np.linspace(0, 2 * np.pi, 36, False))
    else:
        dist = _fit_distance(layout, target, direction(az), opts)
    return look_at_camera(target + dist * direction(az), target, layout.up, opts.size, opts.fov_deg)


@contextlib.contextmanager
def _stdout_silenced():
    """Send file descriptor 1 to /dev/null for the duration (C libraries write there directly)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def open_renderer(size: tuple[int, int]):
    """An open3d ``OffscreenRenderer`` with post-processing off, or a one-line PosecapError."""
    try:
        import open3d as o3d
        from open3d.visualization import rendering

        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        with _stdout_silenced():  # Filament prints its engine banner on the C-level stdout
            renderer = rendering.OffscreenRenderer(int(size[0]), int(size[1]))
    except Exception as exc:  # noqa: BLE001 - any failure here means no headless rendering
        raise PosecapError(
            f"open3d cannot render offscreen here ({exc.__class__.__name__}: {exc}); install the Vulkan "
            "packages (Debian: libvulkan1 mesa-vulkan-drivers libusb-1.0-0) or set visualize.render3d: false"
        ) from None
    renderer.scene.view.set_post_processing(False)
    renderer.scene.set_background([*BACKGROUND_RGB, 1.0])
    return renderer


def _materials(opts: RenderOptions):
    from open3d.visualization import rendering

    line = rendering.MaterialRecord()
    line.shader = "unlitLine"
    line.line_width = float(opts.line_width)
    thin = rendering.MaterialRecord()
    thin.shader = "unlitLine"
    thin.line_width = max(1.0, opts.line_width / 2)
    point = rendering.MaterialRecord()
    point.shader = "defaultUnlit"
    point.point_size = float(opts.point_size)
    return {"line": line, "trail": thin, "point": point, "static": thin}


class SceneRenderer:
    """Renders frames of one session's scene; the static part (floor, frusta) is added once."""

    def __init__(self, rig: Rig, pose: Pose3D, layout: SceneLayout, opts: RenderOptions, fps: float) -> None:
        self.rig, self.pose, self.layout, self.opts, self.fps = rig, pose, layout, opts, fps
        self.renderer = open_renderer(opts.size)
        self.materials = _materials(opts)
        scene = self.renderer.scene
        depth = float(np.clip(0.12 * layout.radius, 0.15, 0.6))
        for name, lines in (("floor", grid_lines(layout)), ("frusta", frustum_lines(rig, depth))):
            geom = lineset(lines)
            if geom is not None:
                scene.add_geometry(name, geom, self.materials["static"])
        self._dynamic: list[str] = []
        self.trail_idx = trail_joint_indices(pose.skeleton) if opts.trail_frames > 0 else []

    def camera_at(self, t_s: float) -> Camera:
        return virtual_camera(self.layout, self.rig, self.opts, t_s)

    def _clear(self) -> None:
        for name in self._dynamic:
            self.renderer.scene.remove_geometry(name)
        self._dynamic = []

    def render(self, index: int, t_s: float = 0.0) -> tuple[np.ndarray, Camera]:
        """Render pose3d frame ``index``; returns (H, W, 3) uint8 **RGB** and the camera used."""
        self._clear()
        lo = max(0, index - self.opts.trail_frames)
        geoms = frame_geometry(self.pose.joints[index], self.pose.joints[lo:index + 1], self.pose.skeleton.limbs,
                               self.trail_idx, BACKGROUND_RGB)
        for name, geom, kind in geoms:
            self.renderer.scene.add_geometry(name, geom, self.materials[kind])
            self._dynamic.append(name)
        return self._shoot(t_s)

    def render_rig(self) -> tuple[np.ndarray, Camera]:
        """Render the floor and the camera frusta alone (no people), from the start position."""
        self._clear()
        return self._shoot(0.0)

    def _shoot(self, t_s: float) -> tuple[np.ndarray, Camera]:
        cam = self.camera_at(t_s)
        ext = np.eye(4)
        ext[:3, :3], ext[:3, 3] = cam.R, cam.t
        self.renderer.setup_camera(cam.K, ext, int(cam.image_size[0]), int(cam.image_size[1]))
        img = np.asarray(self.renderer.render_to_image()).copy()
        return img, cam

    def annotate(self, rgb: np.ndarray, cam: Camera, index: int | None) -> np.ndarray:
        """BGR copy of a render with camera names, person labels and the frame number (None: rig only)."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if not self.opts.labels:
            return bgr
        for c in self.rig.cameras:
            uv = cam.project(c.center_world)
            if np.isfinite(uv).all():
                put_label(bgr, c.name, (uv[0] + 6, uv[1] - 6), (60, 60, 60), bg=None)
        if index is None:
            return bgr
        for p in range(self.pose.num_people):
            j = self.pose.joints[index, p]
            ok = np.isfinite(j).all(axis=1)
            if not ok.any():
                continue
            top = j[ok][np.argmax(j[ok] @ self.layout.up)]
            uv = cam.project(top + self.layout.up * 0.15)
            if np.isfinite(uv).all():
                r, g, b = (int(round(v * 255)) for v in person_color(p))
                put_label(bgr, f"P{p}", (uv[0] - 10, uv[1]), (b, g, r), bg=None)
        put_label(bgr, f"frame {int(self.pose.frame_index[index])}", (8, 24), (40, 40, 40), bg=None)
        return bgr


def render_video(renderer: SceneRenderer, path: Path, frames: Sequence[int], fps: float,
                 show_progress: bool = True) -> int:
    """Render ``frames`` (positions into pose3d) to an MP4 at ``fps``; returns the frame count."""
    with VideoSink(path, fps) as sink:
        for k, i in enumerate(tqdm(frames, desc="render 3D", unit="frame", disable=not show_progress)):
            rgb, cam = renderer.render(int(i), t_s=k / fps)
            sink.write(renderer.annotate(rgb, cam, int(i)))
    return len(frames)


def render_stills(renderer: SceneRenderer, path: Path, frames: Sequence[int], cols: int | None = None) -> list[int]:
    """Render chosen frames (fixed camera) into one PNG grid; returns the frame positions drawn."""
    tiles = []
    for i in frames:
        rgb, cam = renderer.render(int(i), t_s=0.0)
        tiles.append(renderer.annotate(rgb, cam, int(i)))
    if not tiles:
        return []
    cols = cols or grid_columns(len(tiles))
    write_png(path, tile_grid(tiles, renderer.opts.size, cols))
    return [int(i) for i in frames]
