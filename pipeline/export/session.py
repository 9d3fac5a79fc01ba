"""Export a session's ``pose3d/`` into ``export/``: every chosen format, plus ``export/export.yaml``.

Frames and units per format:

- ``trc/person<id>.trc`` and ``bvh/person<id>.bvh``: Y up (OpenSim's and BVH's convention), the
  world rotated by the smallest rotation taking its up direction onto +Y;
- ``pose3d.c3d``: Z up (C3D viewers' convention), likewise;
- ``anipose/person<id>.csv`` and ``json/``: the world frame unchanged.

Positions are in ``units`` (m, cm or mm). ``export.yaml`` (schema ``posecap/export@1``) lists the
files, the units, the frame rate, the world up direction used and each format's rotation, so a
reader can map any file back to the world frame: ``X_world = R^T X_file / scale``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_yaml
from pipeline.export.bvh import write_bvh
from pipeline.export.c3d import write_c3d
from pipeline.export.csv_anipose import write_anipose_csv
from pipeline.export.json_export import write_frames_json, write_person_json
from pipeline.export.pose3d import UNIT_SCALE, Pose3D, estimate_up, opensim_marker_name, rotation_to_up
from pipeline.export.trc import write_trc
from pipeline.skeleton import COCO17, remap_joints

log = logging.getLogger("posecap")

FORMATS = ("trc", "c3d", "csv", "json", "bvh")
EXPORT_SCHEMA = "export@1"


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how.

    Attributes:
        formats: subset of :data:`FORMATS`.
        units: ``"m"``, ``"cm"`` or ``"mm"``.
        fps: frame rate written into the files.
        up_axis: world up direction: ``"auto"`` or an axis name (see ``estimate_up``).
        marker_names: ``"opensim"`` (``LShoulder``) or ``"joint"`` (``left_shoulder``) for TRC and C3D.
        bvh_rotation_order: Euler channel order of the BVH files.
        min_frames: people seen in fewer frames are not exported.
    """

    formats: tuple[str, ...] = FORMATS
    units: str = "mm"
    fps: float = 30.0
    up_axis: str = "auto"
    marker_names: str = "opensim"
    bvh_rotation_order: str = "ZXY"
    min_frames: int = 1


def _markers(joint_names: Sequence[str], style: str) -> list[str]:
    return [opensim_marker_name(n) if style == "opensim" else n for n in joint_names]


def _span(known_any: np.ndarray) -> slice:
    frames = np.flatnonzero(known_any)
    return slice(int(frames[0]), int(frames[-1]) + 1)


def export_session(pose: Pose3D, out_dir: Path, opts: ExportOptions) -> dict[str, Any]:
    """Write every chosen format for ``pose`` under ``out_dir``; returns the manifest written.

    People with fewer than ``opts.min_frames`` frames holding a known joint are skipped. Per-person
    files cover the frames from the person's first to last appearance.
    """
    scale = UNIT_SCALE[opts.units]
    up = estimate_up(pose.joints, pose.skeleton, opts.up_axis)
    r_y = rotation_to_up(up, "y")
    r_z = rotation_to_up(up, "z")
    known = np.isfinite(pose.joints).all(axis=-1)  # (T, P, J)
    frames_seen = known.any(axis=2).sum(axis=0)
    people = [p for p in range(pose.num_people) if frames_seen[p] >= max(1, opts.min_frames)]
    skipped = [p for p in range(pose.num_people) if 0 < frames_seen[p] < max(1, opts.min_frames)]
    if skipped:
        log.info("export: skipping person(s) %s seen in fewer than %d frames", skipped, opts.min_frames)
    if not people:
        log.warning("export: pose3d holds no person with a known joint; writing only export.yaml")
    names = list(pose.joint_names)
    world = pose.joints * scale
    files: dict[str, list[str]] = {}
    fi = pose.frame_index

    def rel(p: Path) -> str:
        return p.relative_to(out_dir).as_posix()

    if "trc" in opts.formats and people:
        pts = world @ r_y.T
        markers = _markers(names, opts.marker_names)
        for p in people:
            s = _span(known[:, p].any(axis=1))
            path = out_dir / "trc" / f"person{p}.trc"
            write_trc(path, pts[s, p], markers, fi[s], opts.fps, opts.units)
            files.setdefault("trc", []).append(rel(path))
    if "c3d" in opts.formats and people:
        pts = world @ r_z.T
        markers = _markers(names, opts.marker_names)
        labels = [f"P{p}:{m}" for p in people for m in markers]
        T = pts.shape[0]
        path = out_dir / "pose3d.c3d"
        write_c3d(path, pts[:, people].reshape(T, -1, 3), labels, opts.fps, opts.units, int(fi[0]) + 1,
                  residual_px=pose.reprojection_error_px[:, people].reshape(T, -1),
                  views_used=pose.views_used[:, people].reshape(T, -1))
        files["c3d"] = [rel(path)]
    if "csv" in opts.formats and people:
        for p in people:
            s = _span(known[:, p].any(axis=1))
            path = out_dir / "anipose" / f"person{p}.csv"
            write_anipose_csv(path, world[s, p], pose.reprojection_error_px[s, p], pose.views_used[s, p], names, fi[s])
            files.setdefault("csv", []).append(rel(path))
    if "json" in opts.formats:
        path = out_dir / "json" / "frames.json"
        write_frames_json(path, world, pose.reprojection_error_px, pose.views_used, fi, names, opts.fps, opts.units)
        files["json"] = [rel(path)]
        for p in people:
            s = _span(known[:, p].any(axis=1))
            path = out_dir / "json" / f"person{p}.json"
            write_person_json(path, p, world[s, p], pose.reprojection_error_px[s, p], pose.views_used[s, p], fi[s],
                              names, opts.fps, opts.units)
            files["json"].append(rel(path))
    if "bvh" in opts.formats and people:
        pts = world @ r_y.T
        coco = pts if pose.skeleton.name == "coco17" else remap_joints(pts, pose.skeleton, COCO17)
        steps = np.diff(fi)
        frame_time = float(np.median(steps)) / opts.fps if steps.size else 1.0 / opts.fps
        for p in people:
            s = _span(known[:, p].any(axis=1))
            path = out_dir / "bvh" / f"person{p}.bvh"
            write_bvh(path, coco[s, p], COCO17.joint_names, frame_time, opts.bvh_rotation_order)
            files.setdefault("bvh", []).append(rel(path))
    manifest = {
        "units": opts.units,
        "fps": opts.fps,
        "joint_names": names,
        "people": people,
        "world_up": [round(float(v), 6) for v in up],
        "up_axis_param": opts.up_axis,
        "frames": {
            "trc": {"up": "+y", "R_file_from_world": r_y.round(9).tolist()},
            "bvh": {"up": "+y", "R_file_from_world": r_y.round(9).tolist()},
            "c3d": {"up": "+z", "R_file_from_world": r_z.round(9).tolist()},
            "csv": {"up": "world", "R_file_from_world": np.eye(3).tolist()},
            "json": {"up": "world", "R_file_from_world": np.eye(3).tolist()},
        },
        "files": files,
    }
    write_yaml(out_dir / "export.yaml", manifest, EXPORT_SCHEMA)
    return manifest
