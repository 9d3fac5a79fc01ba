"""Load Hugging Face ViTPose checkpoints into this backbone and its heatmap head.

A ``transformers`` ``VitPoseForPoseEstimation`` checkpoint (e.g. ``usyd-community/vitpose-base-simple``)
is a folder with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, or a
sharded ``*.index.json``). :func:`load_vitpose` reads it without ``transformers``: the config
becomes a :class:`~pipeline.model.config.ModelConfig` (patch-16 stem with padding 2, absolute
positions, LayerNorm eps from the file, simple or classic decoder) and the weights are renamed:

=================================================================  ===================================
Hugging Face key                                                   posecap key
=================================================================  ===================================
backbone.embeddings.patch_embeddings.projection.{weight,bias}      backbone.stem.proj.*
backbone.embeddings.position_embeddings (1, 1 + L, C)              backbone.pos.table = pe[:, 1:] + pe[:, :1]
backbone.encoder.layer.i.layernorm_before / layernorm_after        backbone.blocks.i.norm1 / norm2
backbone.encoder.layer.i.attention.attention.{query,key,value}     backbone.blocks.i.attn.qkv (concatenated)
backbone.encoder.layer.i.attention.output.dense                    backbone.blocks.i.attn.proj
backbone.encoder.layer.i.mlp.fc1 / fc2                             backbone.blocks.i.mlp.fc1 / fc2
backbone.layernorm                                                 backbone.norm
head.conv (simple)                                                 head.conv
head.deconv1, head.batchnorm1, head.deconv2, head.batchnorm2      head.deconvs.0, .1, .3, .4
head.conv (classic)                                                head.conv
=================================================================  ===================================

The class token's position embedding is folded into every patch's (ViTPose adds both), so
the mapping is exact. Inputs are normalized as the HF image processor does (ImageNet mean and
std, RGB, [0, 1] scale) at the checkpoint's size (192 x 256 for the COCO models).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import ConfigError
from pipeline.model.config import BackboneConfig, HeadConfig, ModelConfig, StemConfig
from pipeline.model.pose_model import PoseModel, build_model

__all__ = ["convert_vitpose_state_dict", "load_state_file", "load_vitpose", "vitpose_model_config"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def vitpose_model_config(hf_config: Mapping[str, Any], kernels: str = "auto") -> ModelConfig:
    """The :class:`ModelConfig` of a ``VitPoseConfig`` dict (``config.json``).

    Raises:
        ConfigError: a Mixture-of-Experts backbone (ViTPose+), a non-GELU activation or a
            decoder scale that differs from patch size / 4.
    """
    bc = hf_config.get("backbone_config") or {}
    if bc.get("model_type", "vitpose_backbone") != "vitpose_backbone":
        raise ConfigError(
            f"ViTPose config: backbone model_type must be 'vitpose_backbone'; got {bc.get('model_type')!r}")
    if int(bc.get("num_experts", 1)) != 1:
        raise ConfigError("ViTPose config: Mixture-of-Experts backbones (ViTPose+, num_experts > 1) are not supported")
    if bc.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"ViTPose config: hidden_act must be 'gelu'; got {bc.get('hidden_act')!r}")
    img_h, img_w = _pair(bc.get("image_size", (256, 192)))
    patch_h, patch_w = _pair(bc.get("patch_size", (16, 16)))
    if patch_h != patch_w:
        raise ConfigError(f"ViTPose config: square patches only; got {patch_h} x {patch_w}")
    depth = int(bc.get("num_hidden_layers", 12))
    out_indices = bc.get("out_indices") or [depth]
    depth = int(out_indices[-1]) if int(out_indices[-1]) > 0 else depth + 1 + int(out_indices[-1])
    hidden = int(bc.get("hidden_size", 768))
    stem = StemConfig(kind="patch", patch_size=patch_w, patch_padding=2)
    backbone = BackboneConfig(
        stem=stem, embed_dim=hidden, depth=depth, num_heads=int(bc.get("num_attention_heads", 12)),
        mlp_ratio=float(bc.get("mlp_ratio", 4)), mlp="gelu", norm="layernorm",
        norm_eps=float(bc.get("layer_norm_eps", 1e-12)), qkv_bias=bool(bc.get("qkv_bias", True)),
        positions="abs", abs_grid=(img_w // patch_w, img_h // patch_h), final_norm=True,
    )
    simple = bool(hf_config.get("use_simple_decoder", True))
    num_labels = len(hf_config.get("id2label") or {}) or int(hf_config.get("num_labels", 17))
    config = ModelConfig(input_size=(img_w, img_h), num_joints=num_labels, backbone=backbone,
                         head=HeadConfig(kind="heatmap", decoder="simple" if simple else "classic"),
                         kernels=kernels)  # type: ignore[arg-type]
    scale = int(hf_config.get("scale_factor", 4))
    if simple and scale != config.upsample_factor:
        raise ConfigError(f"ViTPose config: scale_factor {scale} must equal patch_size / 4 = {config.upsample_factor}")
    return config


def convert_vitpose_state_dict(state_dict: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename (and fuse q/k/v of) a ``VitPoseForPoseEstimation`` state dict to :class:`PoseModel` keys.

    Raises:
        ConfigError: a key this mapping expects is missing, or a key is left over.
    """
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise ConfigError(f"ViTPose checkpoint: missing key {key!r}")
        return sd.pop(key)

    emb = "backbone.embeddings."
    out["backbone.stem.proj.weight"] = take(emb + "patch_embeddings.projection.weight")
    out["backbone.stem.proj.bias"] = take(emb + "patch_embeddings.projection.bias")
    pe = take(emb + "position_embeddings")
    out["backbone.pos.table"] = pe[:, 1:] + pe[:, :1]
    for i in range(config.backbone.depth):
        src, dst = f"backbone.encoder.layer.{i}.", f"backbone.blocks.{i}."
        for a, b in (("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("mlp.fc1", "mlp.fc1"),
                     ("mlp.fc2", "mlp.fc2"), ("attention.output.dense", "attn.proj")):
            for p in ("weight", "bias"):
                out[f"{dst}{b}.{p}"] = take(f"{src}{a}.{p}")
        qkv = [f"{src}attention.attention.{n}." for n in ("query", "key", "value")]
        out[f"{dst}attn.qkv.weight"] = torch.cat([take(q + "weight") for q in qkv])
        if config.backbone.qkv_bias:
            out[f"{dst}attn.qkv.bias"] = torch.cat([take(q + "bias") for q in qkv])
    # layers past the output index (out_indices < depth) are unused by ViTPose: drop them
    for key in [k for k in sd if k.startswith("backbone.encoder.layer.")]:
        del sd[key]
    out["backbone.norm.weight"] = take("backbone.layernorm.weight")
    out["backbone.norm.bias"] = take("backbone.layernorm.bias")
    if config.head.decoder == "simple":
        head_map = {"conv": "conv"}
    else:
        head_map = {"deconv1": "deconvs.0", "batchnorm1": "deconvs.1", "deconv2": "deconvs.3",
                    "batchnorm2": "deconvs.4", "conv": "conv"}
    for key in [k for k in sd if k.startswith("head.")]:
        module, _, param = key[len("head."):].partition(".")
        if module in head_map:
            out[f"head.{head_map[module]}.{param}"] = sd.pop(key)
    if sd:
        raise ConfigError(f"ViTPose checkpoint: unexpected keys {sorted(sd)[:5]} (wrong decoder or layout?)")
    return out


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, a sharded ``.index.json`` or a ``.bin`` / ``.pt`` file.

    ``.bin`` / ``.pt`` files load with ``torch.load(..., weights_only=True)`` (no pickled code).
    """
    path = Path(path)
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        shards = sorted(set(index.get("weight_map", {}).values()))
        merged: dict[str, torch.Tensor] = {}
        for shard in shards:
            merged.update(load_state_file(path.parent / shard))
        return merged
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"{path}: reading .safetensors needs the 'safetensors' package (pip install "
                              "safetensors)") from None
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused pickle or a damaged file: a bad weights file
        raise ConfigError(f"{path}: not a loadable weights file ({type(exc).__name__}); a .bin / .pt file must "
                          "hold tensors only (it is read with weights_only=True)") from None
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return dict(state["state_dict"]) if "state_dict" in state else dict(state)


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def load_vitpose(checkpoint_dir: str | Path, kernels: str = "auto") -> PoseModel:
    """A :class:`PoseModel` (eval mode) holding a Hugging Face ViTPose checkpoint.

    Args:
        checkpoint_dir: a folder with ``config.json`` and the weights (a ``huggingface-cli
            download usyd-community/vitpose-base-simple`` snapshot, or ``save_pretrained`` output).
        kernels: the config's kernel mode ("auto" runs Triton on CUDA).

    Raises:
        ConfigError: missing files, an unsupported config or mismatching weights.
    """
    folder = Path(checkpoint_dir)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{folder}: no config.json; pass the folder of a Hugging Face ViTPose checkpoint")
    config = vitpose_model_config(json.loads(config_file.read_text()), kernels)
    weights = next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise ConfigError(f"{folder}: no weights file; expected one of {', '.join(_WEIGHT_FILES)}")
    state = convert_vitpose_state_dict(load_state_file(weights), config)
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{weights}: weights do not fit the ViTPose config: {str(exc).splitlines()[0]}") from None
    return model.eval()
