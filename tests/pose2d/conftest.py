"""Fixtures: a tiny capture session cut from calib_data, and small randomly initialised checkpoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.model import BackboneConfig, HeadConfig, ModelConfig, StemConfig, build_model
from pipeline.training.checkpoint import export_weights

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib_data"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(kind: str, input_size: tuple[int, int] = (96, 128)) -> ModelConfig:
    """The default models' layout (conv stem to stride 16) at a fraction of the width."""
    head = {"heatmap": HeadConfig(kind="heatmap", decoder="classic", deconv_channels=16),
            "simcc": HeadConfig(kind="simcc", token_dim=32, token_heads=2),
            "bottomup": HeadConfig(kind="bottomup", channels=16)}[kind]
    backbone = BackboneConfig(stem=StemConfig(channels=(8, 16, 32, 32)), embed_dim=32, num_heads=2, depth=1)
    return ModelConfig(input_size=input_size, backbone=backbone, head=head, kernels="reference")


def make_weights(path: Path, kind: str, seed: int = 0, input_size: tuple[int, int] = (96, 128)) -> Path:
    torch.manual_seed(seed)
    model = build_model(tiny_config(kind, input_size))
    with torch.no_grad():  # lift the outputs above 0 so every joint is found (a random net's maxima hover near 0)
        for name in ("head.conv.bias", "head.cls_x.bias", "head.cls_y.bias"):
            if name in dict(model.named_parameters()):
                dict(model.named_parameters())[name].add_(1.0)
    export_weights(path, model.state_dict(), model.config, dtype=torch.float32)
    return path


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    return {"bottomup": make_weights(folder / "bu.pt", "bottomup", 1, (160, 128)),
            "topdown": make_weights(folder / "td.pt", "heatmap", 2),
            "simcc": make_weights(folder / "sc.pt", "simcc", 3)}


def make_session(root: Path, frames: int = 6, cameras: tuple[str, ...] = ("cam0", "cam1"), scale: float = 0.5) -> Path:
    """A capture session of ``frames`` frames per camera, tiles of calib_data's quad mosaic (image folders)."""
    mosaics = read_yaml(CALIB / "ground_truth" / "mosaics.yaml", "synth_mosaics@1")["files"]["raw/capture/quad.mp4"]
    rects = dict(zip(mosaics["cameras"], mosaics["rects"]))
    cap = cv2.VideoCapture(str(CALIB / "raw" / "capture" / "quad.mp4"))
    session = root / "session"
    entries = {}
    for i in range(frames):
        ok, mosaic = cap.read()
        assert ok
        for cam in cameras:
            x, y, w, h = rects[cam]
            tile = cv2.resize(mosaic[y:y + h, x:x + w], (round(w * scale), round(h * scale)),
                              interpolation=cv2.INTER_AREA)
            folder = session / "streams" / cam
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i:04d}.png"), tile)
            entries[cam] = {"stream": f"streams/{cam}", "source": "raw/capture/quad.mp4", "crop_rect": [x, y, w, h],
                            "image_size": [tile.shape[1], tile.shape[0]], "fps": 30.0, "frame_count": frames,
                            "time_offset_s": 0.0, "truncated_at_frame": None}
    cap.release()
    write_yaml(session / "session.yaml", {"cameras": list(cameras), "stereo_pairs": [],
                                          "recordings": {"capture": {"kind": "capture", "cameras": entries}}},
               "session@1")
    return session


@pytest.fixture
def session(tmp_path) -> Path:
    return make_session(tmp_path)
