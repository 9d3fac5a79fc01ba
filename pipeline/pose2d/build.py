"""Load the networks a pose2d backend needs, pick the device, and fingerprint the weights.

- :func:`resolve_device`: "auto" | "cpu" | "cuda" -> a torch device (cuda checked).
- :func:`load_posecap_model`: an exported posecap checkpoint (``{"model", "config"}``, the shipped
  ``pipeline/weights/*.pt`` or the user's own) as an eval-mode PoseModel, bf16 autocast on CUDA.
- :func:`weights_digest`: sha256 of a weights file, or of every file of a weights folder (HF
  ViTPose snapshots), recorded in ``pose2d.yaml`` and part of the chunk-checkpoint key.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["default_weights", "load_posecap_model", "resolve_device", "weights_digest"]


def resolve_device(device: str) -> Any:
    """torch device for "auto" (cuda when available), "cpu" or "cuda" (an error without a GPU)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pose2d.device is 'cuda' but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(device)


def default_weights(name: str) -> Path:
    """Path of the shipped checkpoint ``name`` (it may not exist yet)."""
    from pipeline.weights import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{name}.pt"


def load_posecap_model(path: str | Path, device: Any, bf16: bool = True, head: str | None = None) -> Any:
    """An eval-mode PoseModel from an exported checkpoint; ``head`` checks the head kind."""
    from pipeline.weights import load_weights

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; train one (posecap train) or set the pose2d weights path")
    model = load_weights(path, str(device))
    model.config = dataclasses.replace(model.config, autocast=bool(bf16))
    kinds = {"topdown": ("heatmap", "simcc"), "bottomup": ("bottomup",)}
    if head is not None and model.config.head.kind not in kinds[head]:
        raise ConfigError(f"{path}: a {model.config.head.kind} model; the {head} role needs a "
                          f"{' or '.join(kinds[head])} head")
    return model


def weights_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()
