"""Checkpoints that resume exactly and load with ``torch.load(..., weights_only=True)``.

A training checkpoint is a plain dict of tensors, numbers and strings: model, EMA, optimizer
and scheduler state dicts, the step, the elapsed time, and the RNG states of torch (CPU and
CUDA), numpy and Python -- all as tensors, so the safe unpickler accepts them. It is written
atomically (:func:`pipeline.artifacts.atomic_path`): a crash mid-save leaves the previous one.

An exported checkpoint (``pipeline/weights/*.pt``) holds only ``{"model": state_dict,
"config": <ModelConfig as plain data>}`` in fp16 or fp32.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import atomic_path, to_plain
from pipeline.errors import ArtifactError

__all__ = ["export_weights", "get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state"]


def get_rng_state() -> dict[str, Any]:
    """Torch, CUDA, numpy (legacy global) and Python RNG states as tensors."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor(py_state[1], dtype=torch.int64),
        "python_version": torch.tensor([py_state[0]], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`get_rng_state`'s states."""
    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(v) for v in state["numpy_pos"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                         float(state["numpy_gauss"][0])))
    random.setstate((int(state["python_version"][0]), tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, state dicts, numbers, strings) atomically with ``torch.save``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, with a one-line error for a bad file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ArtifactError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None


def export_weights(path: str | Path, state_dict: dict[str, torch.Tensor], model_config: Any,
                   dtype: torch.dtype = torch.float16) -> int:
    """Write a deployable ``{"model", "config"}`` file; floating tensors cast to ``dtype``. Returns its bytes."""
    sd = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
          for k, v in state_dict.items()}
    save_checkpoint(path, {"model": sd, "config": to_plain(asdict(model_config))})
    return Path(path).stat().st_size
