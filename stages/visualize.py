"""Stage ``visualize``: overlay videos, a mosaic, a contact sheet, 3D renders and a calibration report.

Reads ``calib/rig.yaml`` and ``pose3d/``; also, when they exist, ``pose2d/`` (the detections
drawn in the overlays), ``session.yaml`` + ``streams/`` (the video frames drawn on; a camera
without a stream gets a neutral background) and ``calib/report.yaml`` (per-camera calibration
error). Those are optional inputs: they count (for order and caching) when present or written by
another stage, so a session made by hand with just rig.yaml + pose3d (+ pose2d) is never blocked. Writes ``viz/``. See
the README (section "Seeing and exporting a capture").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.artifacts import write_yaml
from pipeline.config import param
from pipeline.export.pose3d import load_pose3d, resolve_fps
from pipeline.geometry.rig import Rig
from pipeline.stage import Stage, StageContext, static_paths
from pipeline.visualization.calib_report import write_report
from pipeline.visualization.inputs import SESSION_YAML, STREAMS, read_capture
from pipeline.visualization.overlay import OverlayOptions, pick_frames, render_overlays
from pipeline.visualization.scene3d import scene_layout

RIG = "calib/rig.yaml"
CALIB_REPORT = "calib/report.yaml"
POSE3D = "pose3d"
POSE2D = "pose2d"
OUT = "viz"
VIZ_SCHEMA = "viz@1"


@dataclass(frozen=True)
class VisualizeParams:
    """visualize: overlay videos, mosaic, contact sheet, offscreen 3D renders, calibration report."""

    overlays: bool = param(True, "write viz/overlay/<cam>.mp4: detections + reprojected skeletons per camera")
    mosaic: bool = param(True, "write viz/mosaic.mp4: every camera's overlay in one grid")
    contact_sheet_frames: int = param(4, "frames in viz/contact_sheet.png (0 = no contact sheet)")
    overlay_scale: float = param(1.0, "size of the per-camera overlay videos relative to the camera image")
    mosaic_max_width: int = param(1920, "width limit of the mosaic video, px")
    stride: int = param(1, "overlays draw every n-th pose3d frame")
    score_threshold: float = param(0.3, "2D keypoints scoring below this are not drawn")
    render3d: bool = param(True, "write viz/scene3d.mp4 and viz/scene3d_frames.png (open3d, offscreen)")
    camera_motion: Literal["fixed", "orbit"] = param("fixed", "3D render camera: fixed, or orbiting the action")
    orbit_deg_per_s: float = param(20.0, "orbit speed, degrees per second of video")
    render_size: tuple[int, int] = param((960, 540), "[width, height] of the 3D renders, px")
    elevation_deg: float = param(25.0, "how far above the floor the 3D render camera looks down from, degrees")
    azimuth_deg: float = param(30.0, "3D render camera direction, degrees from the real cameras' mean direction")
    trail_frames: int = param(15, "frames of history in the 3D trails (0 = none)")
    max_render_frames: int = param(300, "the 3D video uses every n-th frame so at most this many (0 = all)")
    still_frames: list[int] = param([], "stream frame numbers for viz/scene3d_frames.png; empty = 4 evenly spaced")
    up_axis: Literal["auto", "x", "y", "z", "-x", "-y", "-z"] = param(
        "auto", "world axis pointing up (floor and orbit); auto = from the skeletons")
    calibration_report: bool = param(True, "write viz/calibration_report.html and .png")
    fps: float | None = param(None, "frame rate of the videos; null = session.yaml's, else pose3d.yaml's")

    def __post_init__(self) -> None:
        for key in ("overlay_scale", "orbit_deg_per_s"):
            if getattr(self, key) <= 0:
                raise ValueError(f"'{key}' must be > 0, got {getattr(self, key)}")
        for key in ("stride",):
            if getattr(self, key) < 1:
                raise ValueError(f"'{key}' must be >= 1, got {getattr(self, key)}")
        for key in ("contact_sheet_frames", "trail_frames", "max_render_frames"):
            if getattr(self, key) < 0:
                raise ValueError(f"'{key}' must be >= 0, got {getattr(self, key)}")
        if min(self.render_size) < 16:
            raise ValueError(f"'render_size' must be at least 16x16 px, got {list(self.render_size)}")
        if self.mosaic_max_width < 64:
            raise ValueError(f"'mosaic_max_width' must be >= 64, got {self.mosaic_max_width}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"'score_threshold' must be in [0, 1], got {self.score_threshold}")
        if not -89.0 <= self.elevation_deg <= 89.0:
            raise ValueError(f"'elevation_deg' must be in [-89, 89], got {self.elevation_deg}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"'fps' must be > 0, got {self.fps}")


def optional_inputs(ctx: StageContext) -> list[str]:
    """Read when present or produced: 2D detections, the rig report, the capture streams."""
    return [POSE2D, CALIB_REPORT, SESSION_YAML, STREAMS]


def _render_3d(ctx: StageContext, rig: Rig, pose, layout, fps: float, summary: dict) -> np.ndarray | None:
    from pipeline.visualization.render3d import RenderOptions, SceneRenderer, render_stills, render_video

    p: VisualizeParams = ctx.params
    opts = RenderOptions(size=(int(p.render_size[0]), int(p.render_size[1])), orbit=p.camera_motion == "orbit",
                         orbit_deg_per_s=p.orbit_deg_per_s, azimuth_deg=p.azimuth_deg,
                         elevation_deg=p.elevation_deg, trail_frames=p.trail_frames)
    step = 1 if p.max_render_frames == 0 else max(1, -(-pose.num_frames // p.max_render_frames))
    frames = list(range(0, pose.num_frames, step))
    renderer = SceneRenderer(rig, pose, layout, opts, fps)
    n = render_video(renderer, ctx.path(OUT) / "scene3d.mp4", frames, fps / step, ctx.show_progress)
    if p.still_frames:
        lookup = {int(f): i for i, f in enumerate(pose.frame_index)}
        missing = [f for f in p.still_frames if f not in lookup]
        if missing:
            ctx.log.warning("visualize: still_frames %s are not pose3d frames; left out", missing)
        stills = [lookup[f] for f in p.still_frames if f in lookup]
    else:
        stills = pick_frames(np.isfinite(pose.joints).all(-1).any(axis=(1, 2)), 4)
    drawn = render_stills(renderer, ctx.path(OUT) / "scene3d_frames.png", stills)
    summary["scene3d"] = {"video": "scene3d.mp4", "frames": n, "every_nth_frame": step,
                          "camera_motion": p.camera_motion,
                          "stills": "scene3d_frames.png" if drawn else None,
                          "still_frames": [int(pose.frame_index[i]) for i in drawn]}
    if not p.calibration_report:
        return None
    rgb, cam = renderer.render_rig()
    return renderer.annotate(rgb, cam, None)


def run(ctx: StageContext) -> None:
    p: VisualizeParams = ctx.params
    rig_path = ctx.require(RIG)
    rig = Rig.load(rig_path)
    pose = load_pose3d(ctx.require(POSE3D))
    capture = read_capture(ctx.session_dir)
    fps = resolve_fps(p.fps, pose, capture.fps)
    out = ctx.path(OUT)
    layout = scene_layout(rig, pose.joints, pose.skeleton, p.up_axis)
    summary: dict = {"fps": fps, "frames": pose.num_frames, "people": pose.people_present()}
    if p.overlays or p.mosaic or p.contact_sheet_frames > 0:
        opts = OverlayOptions(score_threshold=p.score_threshold, scale=p.overlay_scale, per_camera=p.overlays,
                              mosaic=p.mosaic, mosaic_max_width=p.mosaic_max_width,
                              contact_frames=p.contact_sheet_frames)
        frames = np.arange(0, pose.num_frames, p.stride)
        summary["overlays"] = render_overlays(rig, pose, ctx.path(POSE2D), capture.streams, out, fps / p.stride, opts,
                                              frames=frames, show_progress=ctx.show_progress)
    rig_render = None
    if p.render3d:
        rig_render = _render_3d(ctx, rig, pose, layout, fps, summary)
    if p.calibration_report:
        names = pose.skeleton.joint_names
        hips = [names.index(n) for n in ("left_hip", "right_hip") if n in names]
        tracks = [pose.joints[:, q, hips].mean(axis=1) for q in range(pose.num_people)] if hips else None
        report = ctx.path(CALIB_REPORT)
        summary["calibration_report"] = write_report(out, rig_path, rig, layout, report if report.is_file() else None,
                                                     tracks, rig_render)
    summary["layout"] = {"up": layout.up.round(6).tolist(), "floor_height_m": round(layout.floor_height, 4),
                         "center": layout.center.round(4).tolist(), "radius_m": round(layout.radius, 3)}
    write_yaml(out / "viz.yaml", summary, VIZ_SCHEMA)
    ctx.log.info("visualize: wrote %s", out)


STAGE = Stage(
    name="visualize",
    version="1",
    params_type=VisualizeParams,
    inputs=static_paths(RIG, POSE3D),
    optional_inputs=optional_inputs,
    outputs=static_paths(OUT),
    run=run,
    summary="overlay videos, mosaic, contact sheet, 3D renders and calibration report (viz/)",
)
