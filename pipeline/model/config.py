"""Model config: frozen dataclasses for the pose network (backbone, head, kernels, memory flags).

Sizes are [w, h] (width first) as everywhere in posecap. The default is the hybrid that learns
on a CPU: a conv stem to stride 8, 4 pre-norm transformer blocks of width 160 with 2-D RoPE, and
the ViTPose "simple" heatmap head, at 96 x 128 input (about 1.4 M parameters). A plain ViT
(patch-embedding stem, interpolated absolute positions, as ViTPose) is ``stem.kind = "patch"``
and ``positions = "abs"`` of the same module; :func:`vitpose_config` builds the ViTPose sizes.

The fields are declared with :func:`pipeline.config.param`, so a stage can embed
:class:`ModelConfig` in its YAML section and get typed parsing and help texts for free.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pipeline.config import param
from pipeline.errors import ConfigError

__all__ = ["BackboneConfig", "HeadConfig", "ModelConfig", "StemConfig", "vit_config", "vitpose_config"]


@dataclass(frozen=True)
class StemConfig:
    """Image -> token grid: strided conv3x3 layers ("conv") or one patch embedding ("patch")."""

    kind: Literal["conv", "patch"] = param("conv", "conv: strided conv3x3 + norm + SiLU layers; patch: ViT patchify")
    channels: tuple[int, ...] = param((32, 64, 128), "conv stem: output channels of each stride-2 conv3x3")
    norm: Literal["batch", "group"] = param("batch", "conv stem normalization: BatchNorm or GroupNorm (batch-free)")
    patch_size: int = param(16, "patch stem: patch side in pixels (the stride)")
    patch_padding: int = param(0, "patch stem: zero padding of the patch conv (ViTPose uses 2)")

    @property
    def stride(self) -> int:
        """Input pixels per token along each axis."""
        return 2 ** len(self.channels) if self.kind == "conv" else self.patch_size

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """Token grid [Gw, Gh] of a (height, width) image."""
        if self.kind == "conv":
            gw, gh = width, height
            for _ in self.channels:
                gw, gh = (gw - 1) // 2 + 1, (gh - 1) // 2 + 1
            return gw, gh
        p, pad = self.patch_size, self.patch_padding
        return (width + 2 * pad - p) // p + 1, (height + 2 * pad - p) // p + 1


@dataclass(frozen=True)
class BackboneConfig:
    """Pre-norm transformer over the stem's token grid."""

    stem: StemConfig = param(StemConfig(), "the stem")
    embed_dim: int = param(160, "token width C")
    depth: int = param(4, "number of transformer blocks")
    num_heads: int = param(5, "attention heads (C / heads = head dim)")
    mlp_ratio: float = param(4.0, "MLP hidden width / C (SwiGLU uses 2/3 of it, as LLaMA)")
    mlp: Literal["gelu", "swiglu"] = param("gelu", "MLP activation: gelu, or a swiglu gated MLP")
    norm: Literal["layernorm", "rmsnorm"] = param("layernorm", "block normalization")
    norm_eps: float = param(1e-6, "normalization epsilon (HF ViTPose: 1e-12)")
    qkv_bias: bool = param(True, "bias in the q, k, v projection")
    positions: Literal["rope", "abs"] = param("rope", "2-D RoPE, or learned absolute embeddings interpolated per grid")
    abs_grid: tuple[int, int] = param((12, 16), "abs positions: [Gw, Gh] grid the table is stored at")
    rope_base: float = param(100.0, "RoPE frequency base (axial 2-D RoPE)")
    final_norm: bool = param(True, "normalize the last block's output")
    checkpointing: bool = param(False, "gradient checkpointing per block (recompute in backward)")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the MLP (the SwiGLU value/gate width for "swiglu")."""
        hidden = int(self.embed_dim * self.mlp_ratio)
        return max(1, round(2 * hidden / 3)) if self.mlp == "swiglu" else hidden


@dataclass(frozen=True)
class HeadConfig:
    """The head and its codec's parameters."""

    kind: Literal["heatmap", "simcc", "bottomup"] = param(
        "heatmap", "heatmap: top-down heatmaps; simcc: top-down x/y classification; bottomup: heatmaps + AE tags")
    decoder: Literal["simple", "classic"] = param(
        "simple", "heatmap head: ViTPose simple (ReLU, bilinear, conv3x3) or classic (deconvs, conv1x1)")
    deconv_channels: int = param(256, "heatmap classic decoder: channels of the deconv layers")
    sigma: float = param(2.0, "heatmap / AE codecs: Gaussian sigma in heatmap pixels")
    upsample: Literal["pixelshuffle", "deconv", "bilinear"] = param(
        "pixelshuffle", "bottom-up head: token grid -> 1/4 resolution by PixelShuffle, transposed conv or bilinear")
    channels: int = param(64, "bottom-up head: channels at 1/4 resolution")
    tag_dim: int = param(1, "bottom-up head: associative-embedding tag dimension L")
    skips: bool = param(False, "bottom-up head: add the conv stem's stride-8 and stride-4 features (conv stem only)")
    split_ratio: float = param(2.0, "SimCC: bins per input pixel")
    simcc_sigma: tuple[float, float] = param((4.9, 5.66), "SimCC: label sigma in bins (x, y)")
    token_dim: int = param(128, "SimCC: keypoint token width")
    token_kernel: int = param(7, "SimCC: kernel of the conv that makes one map per keypoint")
    token_heads: int = param(2, "SimCC: attention heads of the keypoint-token block")


@dataclass(frozen=True)
class ModelConfig:
    """The 2-D pose network: backbone, head, kernel dispatch and memory flags."""

    input_size: tuple[int, int] = param((96, 128), "network input [w, h] in pixels (top-down crop size)")
    skeleton: str = param("coco17", "joint order of the outputs")
    num_joints: int = param(17, "K, joints per person (must match the skeleton)")
    backbone: BackboneConfig = param(BackboneConfig(), "the backbone")
    head: HeadConfig = param(HeadConfig(), "the head")
    kernels: Literal["auto", "triton", "reference"] = param(
        "auto", "auto: Triton kernels on CUDA, PyTorch elsewhere; triton / reference force a path")
    autocast: bool = param(True, "bf16 autocast on CUDA")

    def __post_init__(self) -> None:
        b, s = self.backbone, self.backbone.stem
        where = "model"
        if b.embed_dim < 1 or b.depth < 0 or b.num_heads < 1 or b.embed_dim % b.num_heads:
            raise ConfigError(f"{where}.backbone: embed_dim ({b.embed_dim}) must be a positive multiple of "
                              f"num_heads ({b.num_heads}), depth >= 0")
        if b.positions == "rope" and b.head_dim % 4:
            raise ConfigError(f"{where}.backbone: 2-D RoPE needs head_dim = embed_dim / num_heads divisible by 4; "
                              f"got {b.head_dim}")
        if s.kind == "conv" and (not s.channels or min(s.channels) < 1):
            raise ConfigError(f"{where}.backbone.stem: a conv stem needs at least one positive channel count")
        if s.kind == "patch" and (s.patch_size < 1 or s.patch_padding < 0):
            raise ConfigError(f"{where}.backbone.stem: patch_size must be >= 1 and patch_padding >= 0")
        stride = s.stride
        if stride < 4 or stride & (stride - 1):
            raise ConfigError(f"{where}.backbone.stem: stride must be a power of two >= 4 (heads upsample to 1/4); "
                              f"got {stride}")
        w, h = self.input_size
        if w < stride or h < stride:
            raise ConfigError(f"{where}: input_size {list(self.input_size)} is smaller than the stem stride {stride}")
        if self.head.kind == "simcc" and self.head.token_dim % self.head.token_heads:
            raise ConfigError(f"{where}.head: token_dim must be a multiple of token_heads")
        if self.num_joints < 1:
            raise ConfigError(f"{where}: num_joints must be >= 1; got {self.num_joints}")
        if self.head.skips and (self.head.kind != "bottomup" or s.kind != "conv" or len(s.channels) < 3):
            raise ConfigError(f"{where}.head: skips need the bottomup head and a conv stem of >= 3 layers "
                              f"(stride-4 and stride-8 features)")

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid [Gw, Gh] at ``input_size``."""
        return self.backbone.stem.grid(*self.input_size)

    @property
    def upsample_factor(self) -> int:
        """Heads upsample the token grid by stride / 4 to reach 1/4 input resolution."""
        return self.backbone.stem.stride // 4

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """[W, H] of the heatmap and AE heads' outputs at ``input_size``."""
        gw, gh = self.grid
        return gw * self.upsample_factor, gh * self.upsample_factor


def vit_config(embed_dim: int = 192, depth: int = 6, num_heads: int = 3, input_size: tuple[int, int] = (192, 256),
               **head: object) -> ModelConfig:
    """A plain ViT (patch-16 stem, interpolated absolute positions) with the given head fields."""
    stem = StemConfig(kind="patch", patch_size=16, patch_padding=0)
    grid = stem.grid(*input_size)
    backbone = BackboneConfig(stem=stem, embed_dim=embed_dim, depth=depth, num_heads=num_heads, positions="abs",
                              abs_grid=grid)
    return ModelConfig(input_size=input_size, backbone=backbone, head=replace(HeadConfig(), **head))


VITPOSE_SIZES = {"small": (384, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16), "huge": (1280, 32, 16)}
"""ViTPose variant -> (embed_dim, depth, num_heads)."""


def vitpose_config(variant: str = "base", decoder: str = "simple", input_size: tuple[int, int] = (192, 256),
                   num_joints: int = 17) -> ModelConfig:
    """The ViTPose architecture (patch 16 with padding 2, abs positions, LayerNorm eps 1e-12, GELU)."""
    if variant not in VITPOSE_SIZES:
        raise ConfigError(f"vitpose_config: variant must be one of {', '.join(VITPOSE_SIZES)}; got {variant!r}")
    dim, depth, heads = VITPOSE_SIZES[variant]
    stem = StemConfig(kind="patch", patch_size=16, patch_padding=2)
    backbone = BackboneConfig(stem=stem, embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0, mlp="gelu",
                              norm="layernorm", norm_eps=1e-12, qkv_bias=True, positions="abs",
                              abs_grid=stem.grid(*input_size))
    return ModelConfig(input_size=input_size, num_joints=num_joints, backbone=backbone,
                       head=HeadConfig(kind="heatmap", decoder=decoder))
