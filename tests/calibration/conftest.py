"""Fixtures of the calibration tests: rendered board sweeps with known cameras, and session folders."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.calibration.board import BoardConfig
from tests.calibration.render import TrueCamera, default_camera, render_sweep


@dataclass(frozen=True)
class Sweep:
    """A rendered sweep: its video, the true camera, the board and the poses (board -> camera)."""

    video: Path
    camera: TrueCamera
    board: BoardConfig
    poses: list


CAMERAS: dict[str, TrueCamera] = {}


def camera(model: str) -> TrueCamera:
    """One shared TrueCamera per model, so its ray cache is built once per test session."""
    if model not in CAMERAS:
        CAMERAS[model] = default_camera(model)
    return CAMERAS[model]


@pytest.fixture(scope="session")
def checker_sweep(tmp_path_factory) -> Sweep:
    """40 frames of a 9x6 checkerboard, every 10th frame blurred (sigma 2.5 px)."""
    board = BoardConfig()
    cam = camera("pinhole5")
    path, poses = render_sweep(
        tmp_path_factory.mktemp("checker") / "cam0.mkv", cam, board, 40, seed=2, blur_every=10
    )
    return Sweep(path, cam, board, poses)


@pytest.fixture(scope="session")
def charuco_sweep(tmp_path_factory) -> Sweep:
    """40 frames of a 9x6-inner-corner ChArUco board, partly out of view."""
    board = BoardConfig(type="charuco")
    cam = camera("pinhole5")
    path, poses = render_sweep(
        tmp_path_factory.mktemp("charuco") / "cam0.mkv",
        cam,
        board,
        40,
        seed=4,
        partial=True,
        fill=(0.45, 0.8),
    )
    return Sweep(path, cam, board, poses)


def make_session(
    root: Path, streams: dict[str, tuple[Path, tuple[int, int]]], recording: str = "intrinsics"
) -> Path:
    """A session folder holding session.yaml and ``calib/streams/<recording>/<cam>.mkv`` copies."""
    cams = {}
    for cam, (video, size) in streams.items():
        rel = f"calib/streams/{recording}/{cam}.mkv"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, root / rel)
        cams[cam] = {
            "stream": rel,
            "source": str(video),
            "crop_rect": [0, 0, size[0], size[1]],
            "image_size": list(size),
            "fps": 30.0,
            "frame_count": 0,
            "time_offset_s": 0.0,
            "truncated_at_frame": None,
        }
    session = {
        "schema": "posecap/session@1",
        "cameras": list(streams),
        "stereo_pairs": [],
        "recordings": {recording: {"kind": "intrinsics", "cameras": cams}},
    }
    (root / "session.yaml").write_text(yaml.safe_dump(session, sort_keys=False))
    return root
