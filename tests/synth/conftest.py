"""Shared fixtures for the synthetic-session tests: the committed sample and its scene."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.synth import build_scene, load_ground_truth, read_options

CALIB_DATA = Path(__file__).resolve().parents[2] / "calib_data"


def read_video(path: Path) -> np.ndarray:
    """All frames of a video as (F, H, W, 3) uint8 BGR."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert frames, f"{path}: cv2.VideoCapture read no frames"
    return np.stack(frames)


@pytest.fixture(scope="session")
def calib_dir() -> Path:
    if not (CALIB_DATA / "ground_truth" / "options.yaml").is_file():
        pytest.fail(f"{CALIB_DATA} holds no sample session; "
                    "rebuild it with python -m pipeline.synth calib_data")
    return CALIB_DATA


@pytest.fixture(scope="session")
def calib_gt(calib_dir):
    return load_ground_truth(calib_dir)


@pytest.fixture(scope="session")
def calib_scene(calib_dir):
    return build_scene(read_options(calib_dir))
