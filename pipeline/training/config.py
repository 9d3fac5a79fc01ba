"""Training config: frozen dataclasses parsed from ``configs/train_*.yaml`` (sections ``model``, ``data``, ``train``).

Example (``posecap train configs/train_topdown.yaml``)::

    model: {head: {kind: heatmap}}      # a pipeline.model.ModelConfig
    data: {pool_size: 12000}            # a DataConfig
    train: {steps: 3000, batch_size: 32, lr: 2.0e-3, out_dir: tmp/train/topdown}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import load_config, param
from pipeline.errors import ConfigError
from pipeline.model.config import ModelConfig
from pipeline.training.data import DataConfig

__all__ = ["OptimConfig", "TrainConfig", "TrainSections", "load_train_config"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up and cosine decay."""

    lr: float = param(2e-3, "peak learning rate")
    min_lr_ratio: float = param(0.02, "final learning rate / peak")
    weight_decay: float = param(0.05, "decoupled weight decay (not on norms, biases, position params)")
    betas: tuple[float, float] = param((0.9, 0.999), "AdamW betas")
    warmup_steps: int = param(150, "linear warm-up steps")
    grad_clip: float = param(1.0, "max gradient norm (0 = no clipping)")


@dataclass(frozen=True)
class TrainConfig:
    """The run: length, batches, EMA, evaluation, checkpoints."""

    steps: int = param(3000, "optimizer steps (the cosine schedule spans them)")
    batch_size: int = param(32, "samples per step")
    seed: int = param(0, "batch / augmentation / init seed")
    optim: OptimConfig = param(OptimConfig(), "optimizer and schedule")
    ema_decay: float = param(0.998, "EMA of the weights (0 = off); evaluation and export use the EMA")
    ema_warmup: bool = param(True, "ramp the EMA decay as min(decay, (1 + step) / (10 + step))")
    eval_every: int = param(300, "held-out evaluation every N steps (0 = only at the end)")
    checkpoint_every: int = param(300, "checkpoint every N steps")
    out_dir: str = param("tmp/train/run", "checkpoints, log and exports (relative to the working directory)")
    device: str = param("auto", "auto (cuda if available), cpu or cuda")
    threads: int = param(2, "torch CPU threads")
    flip_test: bool = param(False, "evaluate with the flip test (heatmap head)")
    loss_heatmap_weight: float = param(1.0, "heatmap loss weight (masked MSE)")
    loss_tag_weight: float = param(1e-3, "bottom-up: associative-embedding tag loss weight")
    loss_tag_push_margin: float = param(2.0, "bottom-up: push = hinge max(0, margin - tag distance); 0 = exp(-d^2)")
    loss_simcc_beta: float = param(10.0, "SimCC: logit scale of the KL loss")
    max_time_s: float = param(0.0, "stop (with a checkpoint) after this many seconds (0 = no limit)")
    init_from: str = param("", "initialise from an exported checkpoint (.pt with 'model'); '' = random init")
    init_prefix: str = param("backbone.", "only the weights whose names start with this prefix are initialised")


@dataclass(frozen=True)
class TrainSections:
    """A parsed training config file."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    source: Path | None


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def load_train_config(path: str | Path | None) -> TrainSections:
    """Parse a training config (None: all defaults)."""
    cfg = load_config(path, SECTIONS)
    model, data = cfg["model"], cfg["data"]
    if data.packed_sizes and model.head.kind != "heatmap":
        raise ConfigError(f"{cfg.source}: data.packed_sizes (variable-size packed batches) needs model.head.kind "
                          f"heatmap; got {model.head.kind}")
    if data.scene.kind != ("bottomup" if model.head.kind == "bottomup" else "topdown"):
        raise ConfigError(f"{cfg.source}: data.scene.kind {data.scene.kind!r} does not suit head "
                          f"{model.head.kind!r} (bottomup head: bottomup scenes; heatmap / simcc: topdown)")
    return TrainSections(model, data, cfg["train"], cfg.source)

