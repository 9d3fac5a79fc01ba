"""``posecap view SESSION_DIR``: an interactive open3d window over a session's 3D skeletons.

The window shows the floor grid, the camera frusta (named) and each person's skeleton with its
trail, coloured by identity, with open3d's animation controls (play / pause, the time slider)
in the settings panel and two menu actions, *Previous frame* and *Next frame*. The mouse orbits,
pans and zooms as in any open3d window.

It needs a display. Where there is none (Linux without ``DISPLAY`` or ``WAYLAND_DISPLAY``, e.g.
over SSH or in CI) it prints one line saying so and exits with status 2; ``posecap visualize``
renders the same scene offscreen into ``viz/`` instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import PosecapError

NO_DISPLAY = ("no display found (DISPLAY and WAYLAND_DISPLAY are unset): the 3D viewer needs a desktop session; "
              "use `posecap visualize SESSION_DIR` to render the scene offscreen into viz/ instead")


def has_display(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a window can be opened: always on macOS and Windows, else DISPLAY or WAYLAND_DISPLAY must be set."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("darwin", "win")):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the viewer's arguments to ``parser`` (or a new one) and return it."""
    p = parser or argparse.ArgumentParser(
        prog="posecap view", description="Interactive 3D view of a session's skeletons, cameras and floor.")
    p.add_argument("session_dir", metavar="SESSION_DIR", help="session folder with calib/rig.yaml and pose3d/")
    p.add_argument("--fps", type=float, default=None,
                   help="playback frame rate (default: session.yaml's, else pose3d.yaml's, else 30)")
    p.add_argument("--up-axis", default="auto", choices=("auto", "x", "y", "z", "-x", "-y", "-z"),
                   help="world axis pointing up (default: estimated from the skeletons)")
    p.add_argument("--trail-frames", type=int, default=15, help="frames of history in the trails (default 15)")
    p.add_argument("--start-frame", type=int, default=None, help="stream frame number to open at")
    return p


class _Playback:
    """Holds the session and swaps the per-frame geometry in the window."""

    def __init__(self, vis, pose, fps: float, trail_frames: int, materials: dict) -> None:
        from pipeline.visualization.scene3d import trail_joint_indices

        self.vis, self.pose, self.fps, self.materials = vis, pose, fps, materials
        self.trail_frames = trail_frames
        self.trail_idx = trail_joint_indices(pose.skeleton) if trail_frames > 0 else []
        self.names: list[str] = []
        self.current = -1

    def show(self, index: int) -> None:
        from pipeline.visualization.scene3d import BACKGROUND_RGB, frame_geometry

        index = int(np.clip(index, 0, self.pose.num_frames - 1))
        if index == self.current:
            return
        for name in self.names:
            self.vis.remove_geometry(name)
        lo = max(0, index - self.trail_frames)
        geoms = frame_geometry(self.pose.joints[index], self.pose.joints[lo:index + 1], self.pose.skeleton.limbs,
                               self.trail_idx, BACKGROUND_RGB)
        self.names = []
        for name, geom, kind in geoms:
            self.vis.add_geometry(name, geom, self.materials[kind])
            self.names.append(name)
        self.vis.title = f"posecap view - frame {int(self.pose.frame_index[index])}"
        self.current = index

    def on_frame(self, vis, time_s: float) -> None:
        self.show(int(round(time_s * self.fps)))

    def step(self, delta: int):
        def action(vis) -> None:
            target = int(np.clip(self.current + delta, 0, self.pose.num_frames - 1))
            vis.current_time = target / self.fps  # fires on_frame
            self.show(target)

        return action


def build_window(args: argparse.Namespace, check_display: bool = True):
    """Load the session and build the window for ``args`` (from :func:`build_arg_parser`).

    Returns ``(app, vis, playback)``: the open3d application, the ``O3DVisualizer`` window (not
    yet added to the application) and the playback state.
    """
    from pipeline.export.pose3d import load_pose3d, resolve_fps
    from pipeline.geometry.rig import Rig
    from pipeline.visualization.inputs import session_fps

    session = Path(args.session_dir)
    if not session.is_dir():
        raise PosecapError(f"{session}: session folder not found")
    rig_path = session / "calib" / "rig.yaml"
    if not rig_path.is_file():
        raise PosecapError(f"{rig_path}: not found; the viewer needs the calibrated rig")
    if not (session / "pose3d" / "skeletons.npz").is_file():
        raise PosecapError(f"{session / 'pose3d' / 'skeletons.npz'}: not found; run `posecap triangulate` first")
    if check_display and not has_display():
        raise PosecapError(NO_DISPLAY)
    rig = Rig.load(rig_path)
    pose = load_pose3d(session / "pose3d")
    fps = resolve_fps(args.fps, pose, session_fps(session))
    try:
        import open3d as o3d
        from open3d.visualization import gui, rendering

        app = gui.Application.instance
        app.initialize()
    except Exception as exc:  # noqa: BLE001 - no usable GUI backend
        raise PosecapError(f"cannot open a window ({exc.__class__.__name__}: {exc}); {NO_DISPLAY}") from None
    from pipeline.visualization.scene3d import (
        BACKGROUND_RGB,
        frustum_lines,
        grid_lines,
        lineset,
        scene_layout,
    )

    layout = scene_layout(rig, pose.joints, pose.skeleton, args.up_axis)
    vis = o3d.visualization.O3DVisualizer("posecap view", 1280, 800)
    vis.set_background(np.array([*BACKGROUND_RGB, 1.0], dtype=np.float32), None)
    vis.show_settings = True
    vis.show_skybox(False)
    line = rendering.MaterialRecord()
    line.shader = "unlitLine"
    line.line_width = 4.0
    thin = rendering.MaterialRecord()
    thin.shader = "unlitLine"
    thin.line_width = 2.0
    point = rendering.MaterialRecord()
    point.shader = "defaultUnlit"
    point.point_size = 8.0
    materials = {"line": line, "trail": thin, "point": point}
    depth = float(np.clip(0.12 * layout.radius, 0.15, 0.6))
    for name, lines in (("floor", grid_lines(layout)), ("cameras", frustum_lines(rig, depth))):
        geom = lineset(lines)
        if geom is not None:
            vis.add_geometry(name, geom, thin)
    for cam in rig.cameras:
        vis.add_3d_label(cam.center_world.astype(np.float32), cam.name)
    playback = _Playback(vis, pose, fps, args.trail_frames, materials)
    start = 0
    if args.start_frame is not None:
        hits = np.flatnonzero(pose.frame_index == args.start_frame)
        start = int(hits[0]) if hits.size else 0
    playback.show(start)
    vis.animation_time_step = 1.0 / fps
    vis.animation_duration = max(pose.num_frames - 1, 1) / fps
    vis.set_on_animation_frame(playback.on_frame)
    vis.add_action("Previous frame", playback.step(-1))
    vis.add_action("Next frame", playback.step(+1))
    target = layout.center + layout.up * 1.0
    eye = target + layout.radius * 1.6 * (0.8 * layout.horizontal[0] + 0.6 * layout.up)
    vis.setup_camera(55.0, target.astype(np.float32), eye.astype(np.float32), layout.up.astype(np.float32))
    return app, vis, playback


def run_viewer(args: argparse.Namespace) -> int:
    """Open the window for ``args``; returns 0 when the user closes it."""
    app, vis, _ = build_window(args)
    app.add_window(vis)
    app.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``posecap view``: user errors (and a missing display) print one line and return 2."""
    args = build_arg_parser().parse_args(argv)
    try:
        return run_viewer(args)
    except PosecapError as exc:
        print(f"posecap view: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
