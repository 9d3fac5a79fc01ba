"""Stage ``export``: the triangulated skeletons as TRC, C3D, anipose CSV, JSON and BVH.

Reads ``pose3d/`` (skeletons.npz + pose3d.yaml) and, when there is one, ``session.yaml`` for the
frame rate (declared as an input only when it exists or the config's crop section will make it, so
a hand-made session of just ``pose3d/`` is not blocked); writes ``export/``. It needs no rig:
everything it writes comes from the 3D skeletons. See
the README (section "Seeing and exporting a capture") and :mod:`pipeline.export.session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config import param
from pipeline.export.bvh import ROTATION_ORDERS
from pipeline.export.pose3d import load_pose3d, resolve_fps
from pipeline.export.session import FORMATS, ExportOptions, export_session
from pipeline.stage import Stage, StageContext, static_paths
from pipeline.visualization.inputs import SESSION_YAML, session_fps

POSE3D = "pose3d"
OUT = "export"


@dataclass(frozen=True)
class ExportParams:
    """export: the 3D skeletons as TRC (OpenSim), C3D, anipose CSV, JSON and BVH files."""

    formats: list[str] = param(list(FORMATS), "formats to write: trc, c3d, csv (anipose layout), json, bvh")
    units: Literal["m", "cm", "mm"] = param("mm", "length unit of every exported file")
    fps: float | None = param(None, "frame rate written into the files; null = session.yaml's, else pose3d.yaml's")
    up_axis: Literal["auto", "x", "y", "z", "-x", "-y", "-z"] = param(
        "auto", "world axis pointing up (TRC/BVH are turned Y-up, C3D Z-up); auto = from the skeletons")
    marker_names: Literal["opensim", "joint"] = param(
        "opensim", "TRC/C3D marker names: opensim (LShoulder, as Pose2Sim's models) or joint (left_shoulder)")
    bvh_rotation_order: str = param("ZXY", "Euler channel order of the BVH rotations (ZXY, XYZ, ZYX, ...)")
    min_frames: int = param(1, "people seen in fewer frames than this are not exported")

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(f"'formats' holds {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}")
        if not self.formats:
            raise ValueError("'formats' is empty; list at least one of " + ", ".join(FORMATS))
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"'fps' must be > 0, got {self.fps}")
        if self.bvh_rotation_order not in ROTATION_ORDERS:
            raise ValueError(f"'bvh_rotation_order' must be one of {', '.join(ROTATION_ORDERS)}, "
                             f"got {self.bvh_rotation_order!r}")
        if self.min_frames < 1:
            raise ValueError(f"'min_frames' must be >= 1, got {self.min_frames}")


def run(ctx: StageContext) -> None:
    params: ExportParams = ctx.params
    pose = load_pose3d(ctx.require(POSE3D))
    fps = resolve_fps(params.fps, pose, session_fps(ctx.session_dir))
    opts = ExportOptions(formats=tuple(params.formats), units=params.units, fps=fps, up_axis=params.up_axis,
                         marker_names=params.marker_names, bvh_rotation_order=params.bvh_rotation_order,
                         min_frames=params.min_frames)
    manifest = export_session(pose, ctx.path(OUT), opts)
    n_files = sum(len(v) for v in manifest["files"].values())
    ctx.log.info("export: %d file(s) for %d person(s) in %s (%s, %.6g fps)", n_files, len(manifest["people"]),
                 ctx.path(OUT), params.units, fps)


STAGE = Stage(
    name="export",
    version="1",
    params_type=ExportParams,
    inputs=static_paths(POSE3D),
    optional_inputs=static_paths(SESSION_YAML),
    outputs=static_paths(OUT),
    run=run,
    summary="3D skeletons -> TRC (OpenSim), C3D, anipose CSV, JSON, BVH (export/)",
)
