"""Small real sessions for the executor and batch tests: image-folder streams cut from calib_data,
the true rig scaled to the tiles, tiny random pose models, and a config that runs pose2d,
triangulate and export on them in a few seconds."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import yaml

from pipeline.artifacts import read_yaml, write_yaml
from tests.pose2d.conftest import CALIB, make_session, make_weights

SCALE = 0.5
STAGE_NAMES = ["pose2d", "triangulate", "export"]
# written by the run itself, so never byte-identical between two runs: the engine's lock and timings;
# and the setting that says how a run was cut into tasks, recorded in the metadata's settings
VOLATILE_KEYS = {"timing", "camera_timing", "task_frames"}


def make_weight_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {"bottomup": make_weights(folder / "bu.pt", "bottomup", 1, (160, 128)),
            "topdown": make_weights(folder / "td.pt", "heatmap", 2)}


def write_rig(session: Path, cameras: tuple[str, ...] = ("cam0", "cam1")) -> None:
    """calib_data's true rig for ``cameras``, with intrinsics scaled to the tiles."""
    data = read_yaml(CALIB / "ground_truth" / "rig.yaml", "rig@1")
    cams = {}
    for name in cameras:
        cam = dict(data["cameras"][name])
        K = np.asarray(cam["K"], float)
        K[:2] *= SCALE
        cam["K"] = K.tolist()
        cam["image_size"] = [round(v * SCALE) for v in cam["image_size"]]
        cams[name] = cam
    write_yaml(session / "calib" / "rig.yaml", {"units": "m", "world": data["world"], "cameras": cams}, "rig@1")


def make_batch_session(root: Path, weights: dict[str, Path], frames: int = 6, pose2d: dict | None = None,
                       triangulate: dict | None = None) -> Path:
    """A session folder under ``root`` and its config ``root/posecap.yaml``; returns the config path."""
    session = make_session(root, frames=frames)
    write_rig(session)
    cfg = {"session_dir": "session",
           "pose2d": {"backend": "bottomup", "device": "cpu", "bottomup_weights": str(weights["bottomup"]),
                      "topdown_weights": str(weights["topdown"]), "batch_frames": 1, "chunk_frames": 2,
                      "min_person_score": 0.0, "min_joints": 1, "detector_min_person_score": 0.0,
                      **(pose2d or {})},
           "triangulate": {"refine": False, "min_track_frames": 1, "association_threshold_px": 200.0,
                           **(triangulate or {})},
           "export": {"formats": ["json", "trc"]}}
    path = root / "posecap.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    return value


def artifact_files(session: Path) -> list[Path]:
    """Every artifact of a session (relative paths), the engine's own state left out."""
    return sorted(p.relative_to(session) for p in session.rglob("*") if p.is_file() and ".posecap" not in p.parts)


def assert_same_artifacts(a: Path, b: Path) -> None:
    """Same files, byte for byte; YAML metadata compared without its timing fields."""
    files = artifact_files(a)
    assert files == artifact_files(b)
    for rel in files:
        if rel.suffix == ".yaml" and rel.parts[0] != "calib" and rel.name != "session.yaml":
            assert _strip(yaml.safe_load((a / rel).read_text())) == _strip(yaml.safe_load((b / rel).read_text())), rel
        else:
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel
