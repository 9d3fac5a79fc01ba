"""The shipped default checkpoints, trained here on rendered people (see docs/training.md).

Each ``<name>.pt`` holds ``{"model": state_dict (fp16), "config": ModelConfig as plain data}`` and
loads with ``torch.load(..., weights_only=True)``; ``<name>.yaml`` (schema
``posecap/checkpoint@1``) records the model config, the held-out metrics, the training steps,
time and images/s, and the config that reproduces it.

Example::

    from pipeline.weights import load_default
    model = load_default("topdown_heatmap")   # a PoseModel in eval mode, fp32
    heatmaps = model(images)                  # images: pipeline.training.data.normalize_images(crops)

The models know the synthetic renders only; real footage needs real weights (the ViTPose
loader, ``pipeline.model.vitpose_weights``, or another pose2d backend).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.artifacts import read_yaml, to_plain, write_yaml
from pipeline.config import from_mapping
from pipeline.errors import ArtifactError

__all__ = ["WEIGHTS_DIR", "available", "load_default", "load_weights", "publish", "read_card"]

WEIGHTS_DIR = Path(__file__).resolve().parent
SCHEMA = "checkpoint@1"


def available() -> list[str]:
    """Names of the shipped checkpoints (those with both ``.pt`` and ``.yaml``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt") if p.with_suffix(".yaml").exists())


def read_card(name: str) -> dict[str, Any]:
    """The metrics YAML of checkpoint ``name`` (schema ``posecap/checkpoint@1``)."""
    path = WEIGHTS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ArtifactError(f"{path}: no such checkpoint card; shipped: {', '.join(available()) or 'none'}")
    return read_yaml(path, SCHEMA)


def load_weights(path: str | Path, device: str = "cpu") -> Any:
    """A :class:`~pipeline.model.PoseModel` (eval mode, fp32) from an exported ``{"model", "config"}`` file."""
    import torch

    from pipeline.model import ModelConfig, build_model
    from pipeline.training.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise ArtifactError(f"{path}: expected an exported checkpoint with 'model' and 'config' keys")
    config = from_mapping(ModelConfig, ck["config"], str(path), prefix="config.")
    model = build_model(config)
    if not isinstance(ck["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ck["model"].values()):
        raise ArtifactError(f"{path}: 'model' must map parameter names to tensors")
    state = {k: v.float() if v.is_floating_point() else v for k, v in ck["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit the model its 'config' describes: "
                            f"{str(exc).splitlines()[0].strip()} {str(exc).splitlines()[-1].strip()[:200]}") from None
    return model.to(torch.device(device)).eval()


def load_default(name: str = "topdown_heatmap", device: str = "cpu") -> Any:
    """The shipped checkpoint ``name`` (``topdown_heatmap``, ``bottomup_ae``, ...) as an eval-mode PoseModel."""
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        raise ArtifactError(f"{path}: no such default checkpoint; shipped: {', '.join(available()) or 'none'}")
    return load_weights(path, device)


def publish(run_dir: str | Path, config_path: str | Path, dest: str | Path, evaluate_again: bool = True) -> dict:
    """Ship a training run's best weights: copy ``run_dir/best.pt`` to ``dest`` and write its card.

    The card's metrics are measured again on the config's full held-out set (and, for the
    heatmap head, with the flip test too); training figures come from ``run_dir/best.yaml``.
    Returns the card.
    """
    import shutil

    from pipeline.artifacts import atomic_path
    from pipeline.training.config import load_train_config

    run_dir, dest = Path(run_dir), Path(dest)
    sections = load_train_config(config_path)
    best = read_yaml(run_dir / "best.yaml", "train_best@1")
    with atomic_path(dest) as tmp:
        shutil.copyfile(run_dir / "best.pt", tmp)
    metrics = best["metrics"]
    extra: dict[str, Any] = {}
    if evaluate_again:
        from pipeline.training.data import build_heldout
        from pipeline.training.evaluate import evaluate

        model = load_weights(dest)
        heldout = build_heldout(model.config, sections.data)
        metrics = evaluate(model, heldout)
        if model.config.head.kind in ("heatmap", "bottomup"):
            extra["metrics_flip_test"] = to_plain(evaluate(model, heldout, flip_test=True))
    card = {
        "name": dest.stem,
        "file": dest.name,
        "bytes": dest.stat().st_size,
        "dtype": "float16",
        "input": {"color": "RGB", "scale": "[0, 1] then ImageNet mean / std",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "model": to_plain(asdict(sections.model)),
        "metrics": to_plain(metrics),
        **extra,
        "heldout": {"seed": sections.data.heldout_seed, "size": sections.data.heldout_size,
                    "people": list(sections.data.heldout_people)},
        "training": {"steps": int(best["step"]), "planned_steps": sections.train.steps,
                     "batch_size": sections.train.batch_size, "time_s": float(best["elapsed_s"]),
                     "images_per_s": float(best["images_per_s"]), "threads": sections.train.threads,
                     "config": Path(config_path).name},
        "scope": "synthetic renders only; real footage needs real weights (ViTPose loader or another pose2d backend)",
    }
    write_yaml(dest.with_suffix(".yaml"), card, SCHEMA)
    return card
