"""The pose network: backbone + head (the head owns its codec), built from a ModelConfig.

Shapes: images (N, 3, h, w), normalized as the training data (ImageNet mean / std for ViTPose
weights) -> the head's outputs:

- heatmap: heatmaps (N, K, H, W) at 1/4 input resolution;
- simcc: (simcc_x (N, K, Wx), simcc_y (N, K, Wy));
- bottomup: (heatmaps (N, K, H, W), tags (N, K, H, W, L)).

On CUDA with ``config.autocast`` the network runs under bf16 autocast; outputs are fp32.
``forward_packed`` runs crops of different sizes through the backbone as one packed sequence
and returns one output per crop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.codecs import AssociativeEmbeddingCodec, HeatmapCodec, SimCCCodec
from pipeline.errors import ConfigError
from pipeline.kernels import configure_kernels
from pipeline.model.backbone import Backbone
from pipeline.model.config import ModelConfig
from pipeline.model.heads import BottomUpHead, HeatmapHead, SimCCHead
from pipeline.model.packing import group_by_size, unpack
from pipeline.skeleton import get_skeleton

__all__ = ["PoseModel", "build_head", "build_model"]


def build_head(config: ModelConfig) -> nn.Module:
    """The head named by ``config.head.kind`` with its codec at ``config.input_size``."""
    h, c, k = config.head, config.backbone.embed_dim, config.num_joints
    if h.kind == "heatmap":
        codec = HeatmapCodec(input_size=config.input_size, heatmap_size=config.heatmap_size, sigma=h.sigma)
        return HeatmapHead(c, k, config.upsample_factor, codec, h.decoder, h.deconv_channels)
    if h.kind == "simcc":
        codec = SimCCCodec(input_size=config.input_size, split_ratio=h.split_ratio, sigma=tuple(h.simcc_sigma))
        return SimCCHead(c, k, config.grid, codec, h.token_dim, h.token_kernel, h.token_heads)
    skeleton = get_skeleton(config.skeleton)
    if skeleton.num_joints != k:
        raise ConfigError(f"model: num_joints {k} differs from skeleton {config.skeleton!r} "
                          f"({skeleton.num_joints} joints); the bottom-up codec groups by the skeleton")
    codec = AssociativeEmbeddingCodec(input_size=config.input_size, heatmap_size=config.heatmap_size,
                                      sigma=h.sigma, skeleton=skeleton)
    skip_channels = None
    if h.skips:
        stem = config.backbone.stem.channels
        skip_channels = (stem[2], stem[1])  # stride 8, stride 4
    return BottomUpHead(c, k, config.upsample_factor, codec, h.upsample, h.channels, h.tag_dim, skip_channels)


def _to_float(out: Any) -> Any:
    if isinstance(out, tuple):
        return tuple(o.float() for o in out)
    return out.float()


class PoseModel(nn.Module):
    """Backbone + head. See the module docstring for shapes."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.backbone)
        self.head = build_head(config)

    @property
    def codec(self) -> Any:
        return self.head.codec

    def _autocast(self, device: torch.device) -> torch.autocast:
        enabled = self.config.autocast and device.type == "cuda"
        return torch.autocast(device_type="cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16,
                              enabled=enabled)

    def forward(self, images: torch.Tensor) -> Any:
        """images (N, 3, h, w) -> the head's outputs (fp32)."""
        with self._autocast(images.device):
            if getattr(self.head, "uses_skips", False):
                features, pyramid = self.backbone.forward_features(images)
                out = self.head(features, pyramid)
            else:
                out = self.head(self.backbone(images))
        return _to_float(out)

    def forward_packed(self, crops: list[torch.Tensor]) -> list[Any]:
        """Crops [(3, h_i, w_i), ...] through the packed backbone; one head output per crop.

        The head runs once per group of same-size crops; each output has no batch dim, e.g.
        heatmaps (K, H_i, W_i) for the heatmap head.
        """
        device = crops[0].device if crops else torch.device("cpu")
        if getattr(self.head, "uses_skips", False):  # the head needs stem maps: run each size group whole
            outs_s: list[Any] = [None] * len(crops)
            for idx in group_by_size(crops).values():
                out = self.forward(torch.stack([crops[i] for i in idx]))
                for j, i in enumerate(idx):
                    outs_s[i] = tuple(o[j] for o in out)
            return outs_s
        with self._autocast(device):
            maps = unpack(self.backbone.forward_packed(crops))
            outs: list[Any] = [None] * len(maps)
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, m in enumerate(maps):
                groups.setdefault(tuple(m.shape[-2:]), []).append(i)
            for idx in groups.values():
                out = self.head(torch.stack([maps[i] for i in idx]))
                for j, i in enumerate(idx):
                    outs[i] = tuple(o[j] for o in out) if isinstance(out, tuple) else out[j]
        return [_to_float(o) for o in outs]

    def decode(self, outputs: Any) -> Any:
        """The head's codec decode of batched outputs (numpy keypoints / persons)."""
        return self.head.decode(outputs)


def build_model(config: ModelConfig | None = None, apply_kernel_mode: bool = True) -> PoseModel:
    """A :class:`PoseModel` for ``config`` (default: the CPU-trainable hybrid).

    With ``apply_kernel_mode`` the config's ``kernels`` field is applied process-wide
    (:func:`pipeline.kernels.configure_kernels`).
    """
    config = config or ModelConfig()
    if apply_kernel_mode:
        configure_kernels(config)
    return PoseModel(config)
