"""The stage registry: an explicit mapping, imported lazily so ``posecap --help`` stays instant.

Each stage module defines ``STAGE`` (a :class:`pipeline.stage.Stage`). Shared config sections
that no single stage owns (the calibration board) are listed in ``SHARED_SECTIONS``.
"""

from __future__ import annotations

import importlib

# stage name -> (module, one-line summary); the DAG order comes from declared paths, not from here
STAGE_MODULES: dict[str, tuple[str, str]] = {
    "crop": ("stages.crop", "mosaic / side-by-side / per-camera recordings -> streams + session.yaml"),
    "calibrate_intrinsics": ("stages.calibrate_intrinsics", "per-camera lens calibration from board sweeps"),
    "calibrate_extrinsics": ("stages.calibrate_extrinsics",
                             "camera poses of the rig (bundle adjustment) and stereo pairs from a board sweep"),
    "pose2d": ("stages.pose2d", "2D keypoints per camera: built-in models, ViTPose, ONNX, or imported files"),
    "sync": ("stages.sync", "time offsets of separately recorded cameras from 2D keypoint motion + reprojection"),
    "triangulate": ("stages.triangulate", "multi-view 3D skeletons for several people, tracked over time"),
    "visualize": ("stages.visualize", "overlay videos, mosaic, contact sheet, 3D renders, calibration report"),
    "export": ("stages.export", "3D skeletons -> TRC (OpenSim), C3D, anipose CSV, JSON, BVH"),
}

# section name -> "module:ClassName"
SHARED_SECTIONS: dict[str, str] = {
    "board": "pipeline.calibration.board:BoardConfig",
    "executor": "pipeline.executors.config:ExecutorParams",
}


def load_stages(names: list[str] | None = None) -> list:
    """Import and return the Stage objects (all registered stages by default)."""
    chosen = list(STAGE_MODULES) if names is None else names
    return [importlib.import_module(STAGE_MODULES[n][0]).STAGE for n in chosen]


def config_sections() -> dict[str, type]:
    """Every config section: shared sections first, then each stage's params type."""
    out: dict[str, type] = {}
    for name, target in SHARED_SECTIONS.items():
        module, _, cls = target.partition(":")
        out[name] = getattr(importlib.import_module(module), cls)
    for stage in load_stages():
        out[stage.name] = stage.params_type
    return out
