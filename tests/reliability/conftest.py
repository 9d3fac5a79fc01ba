"""Fixtures: a small hand-made session (true rig + 2D keypoints projected from the ground truth).

``handmade`` is what ``posecap triangulate`` and everything after it reads, written as another
tool would write it, plus a finished ``pose3d/`` so that tests can check a failed run keeps it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import write_bytes, write_npz
from pipeline.cli import main
from pipeline.demo import SAMPLE

FRAMES = 12


def write_handmade(root: Path) -> Path:
    """Lay out ``root/session`` (rig.yaml, pose2d/<cam>.npz) and ``root/posecap.yaml``; returns the config."""
    session = root / "session"
    (session / "calib").mkdir(parents=True)
    shutil.copyfile(SAMPLE / "ground_truth" / "rig.yaml", session / "calib" / "rig.yaml")
    with np.load(SAMPLE / "ground_truth" / "people.npz") as truth:
        for cam in ("cam0", "cam1", "cam2", "cam3"):
            uv = truth[f"uv_{cam}"][:FRAMES].astype(np.float32)
            seen = truth[f"visible_{cam}"][:FRAMES]
            kp = np.concatenate([uv, np.where(seen, 0.9, 0.0)[..., None].astype(np.float32)], axis=-1)
            kp[~seen, :2] = np.nan
            write_npz(session / "pose2d" / f"{cam}.npz", keypoints=kp, frame_index=np.arange(FRAMES))
    config = root / "posecap.yaml"
    write_bytes(config, b"session_dir: session\ntriangulate: {refine: false, min_track_frames: 2}\n"
                        b"visualize: {render3d: false, mosaic: false, overlays: false, calibration_report: false}\n")
    return config


def digests(session: Path) -> dict[str, str]:
    """sha256 of every file under ``session`` except the engine's own ``.posecap`` folder."""
    return {str(p.relative_to(session)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(session.rglob("*")) if p.is_file() and ".posecap" not in p.parts}


@pytest.fixture(scope="session")
def _handmade_done(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("handmade")
    config = write_handmade(root)
    assert main(["-q", "triangulate", str(root / "session"), "--config", str(config)]) == 0
    assert (root / "session" / "pose3d" / "skeletons.npz").is_file()
    return root


@pytest.fixture
def handmade(_handmade_done, tmp_path) -> Path:
    """A fresh copy of the finished hand-made session's folder (``posecap.yaml`` + ``session/``)."""
    root = tmp_path / "hm"
    shutil.copytree(_handmade_done, root)
    return root
