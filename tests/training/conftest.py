"""Tiny models and renders so that training tests stay fast on a CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.kernels import kernel_mode_override
from pipeline.model.config import BackboneConfig, HeadConfig, ModelConfig, StemConfig
from pipeline.training.augment import AugmentConfig
from pipeline.training.config import OptimConfig, TrainConfig, TrainSections
from pipeline.training.data import DataConfig
from pipeline.training.pool import SceneConfig, build_pool


@pytest.fixture(autouse=True)
def _reference_kernels():
    with kernel_mode_override("reference"):
        yield


def tiny_sections(tmp_path, head: str = "heatmap", steps: int = 40, **data_fields) -> TrainSections:
    kind = "bottomup" if head == "bottomup" else "topdown"
    size = (48, 40) if kind == "bottomup" else (32, 48)
    model = ModelConfig(input_size=size,
                        backbone=BackboneConfig(stem=StemConfig(channels=(8, 16)), embed_dim=16, num_heads=2,
                                                depth=1),
                        head=HeadConfig(kind=head, channels=16, token_dim=16, token_heads=2))
    scene = SceneConfig(kind=kind, render_size=(40, 60) if kind == "topdown" else (48, 40), people=(1, 3))
    fields = {"pool_size": 24, "heldout_size": 24, "loader_workers": 0, "render_workers": 1,
              "cache_dir": str(tmp_path / "cache"), **data_fields}
    data = DataConfig(scene=scene, augment=AugmentConfig(), **fields)
    train = TrainConfig(steps=steps, batch_size=8, optim=OptimConfig(lr=3e-3, warmup_steps=3), ema_decay=0.9,
                        eval_every=0, checkpoint_every=1000, out_dir=str(tmp_path / "run"), threads=1)
    return TrainSections(model, data, train, None)


@pytest.fixture(scope="session")
def topdown_pool():
    return build_pool(SceneConfig(kind="topdown", render_size=(40, 60), people=(1, 3)), 24, seed=1, workers=1)


@pytest.fixture(scope="session")
def bottomup_pool():
    return build_pool(SceneConfig(kind="bottomup", render_size=(48, 40), people=(1, 3)), 16, seed=1, workers=1)


__all__ = ["replace", "tiny_sections"]
