"""Estimate the GPU memory of a model config: parameters, gradients, optimizer state, activations.

Use it to size a GPU before training::

    from pipeline.model import ModelConfig, estimate_memory
    est = estimate_memory(ModelConfig(), batch_size=256)
    print(est.summary())

Parameters are counted exactly (the model is built on PyTorch's ``meta`` device, allocating
nothing). Activations are the tensors autograd saves for backward, counted layer by layer for
the CUDA path (FlashAttention keeps O(T) per head, no T x T matrix); per transformer block with
T = N * L tokens of width C, MLP widths F1 (fc1 output) and F (hidden):

- RoPE:     10 T C + T (F1 + F) elements  (norm inputs, qkv, rotated q and k, attention output,
  MLP inputs) plus fp32 row statistics (LayerNorm mean/rstd, attention log-sum-exp per head);
- absolute positions: 8 T C + T (F1 + F) (q and k stay views of qkv).

With ``checkpointing`` only each block's input (T C) is kept, plus one block recomputed during
backward. Training adds fp32 gradients and AdamW's two fp32 moments per parameter, and under
bf16 autocast a bf16 copy of the weights. Allocator fragmentation and cuDNN / cuBLAS workspaces
are not included: leave about 10-20 % headroom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipeline.model.config import ModelConfig

__all__ = ["MemoryEstimate", "count_parameters", "estimate_memory"]

_MIB = 2.0**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per category of one training (or inference) step.

    Attributes:
        parameters: number of parameters.
        param_bytes: fp32 weights, plus their bf16 autocast copy when ``bf16``.
        grad_bytes: fp32 gradients (0 for inference).
        optimizer_bytes: AdamW moments, 2 x fp32 per parameter (0 for inference).
        activation_bytes: tensors saved for backward (training) or the peak live set (inference).
    """

    parameters: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes + self.activation_bytes

    def summary(self) -> str:
        """One line per category in MiB."""
        rows = [("parameters", self.param_bytes), ("gradients", self.grad_bytes),
                ("optimizer", self.optimizer_bytes), ("activations", self.activation_bytes),
                ("total", self.total_bytes)]
        head = f"{self.parameters / 1e6:.2f} M parameters"
        return "\n".join([head] + [f"{name:>12}: {b / _MIB:10.1f} MiB" for name, b in rows])


def count_parameters(config: ModelConfig) -> int:
    """Exact parameter count of the model for ``config``, built on the meta device."""
    from pipeline.model.pose_model import PoseModel

    with torch.device("meta"):
        model = PoseModel(config)
    return sum(p.numel() for p in model.parameters())


def _stem_elements(config: ModelConfig, n: int, w: int, h: int) -> tuple[int, int]:
    """(saved elements, largest live elements) of the stem for n images of h x w."""
    s = config.backbone.stem
    if s.kind == "patch":
        return n * 3 * w * h, n * (3 * w * h + config.backbone.embed_dim * math.prod(s.grid(w, h)))
    saved, peak, c_in = 0, 0, 3
    for c in s.channels:
        out_w, out_h = (w - 1) // 2 + 1, (h - 1) // 2 + 1
        saved += n * (c_in * w * h + 2 * c * out_w * out_h)  # conv input, norm input, SiLU output
        peak = max(peak, n * (c_in * w * h + c * out_w * out_h))
        c_in, w, h = c, out_w, out_h
    saved += n * c_in * w * h  # 1x1 projection input
    return saved, max(peak, n * (c_in + config.backbone.embed_dim) * w * h)


def _block_elements(config: ModelConfig, tokens: int) -> tuple[int, int]:
    """(saved elements, fp32 statistic elements) of one transformer block over ``tokens`` tokens."""
    b = config.backbone
    c = b.embed_dim
    f = b.mlp_hidden
    f1 = 2 * f if b.mlp == "swiglu" else f
    per_c = 10 if b.positions == "rope" else 8
    stats = tokens * (4 + b.num_heads)  # two norms' mean + rstd, attention lse per head
    return tokens * (per_c * c + f1 + f), stats


def _head_elements(config: ModelConfig, n: int) -> int:
    """Saved elements of the head for n images at ``config.input_size``."""
    h, c, k = config.head, config.backbone.embed_dim, config.num_joints
    gw, gh = config.grid
    g = gw * gh
    f = config.upsample_factor
    if h.kind == "heatmap" and h.decoder == "simple":
        return n * c * g * (1 + f * f)
    if h.kind == "heatmap":
        total, c_in, size = 0, c, g
        for _ in range(int(math.log2(f))):
            total += n * (c_in * size + 2 * h.deconv_channels * size * 4)
            c_in, size = h.deconv_channels, size * 4
        return total + n * c_in * size
    if h.kind == "simcc":
        d = h.token_dim
        return n * (c * g + k * g + k * (10 * d + 4 * d) + 2 * k * d)
    return n * (c * g + 3 * h.channels * g * f * f)


def estimate_memory(config: ModelConfig, batch_size: int, training: bool = True, bf16: bool | None = None,
                    checkpointing: bool | None = None) -> MemoryEstimate:
    """Memory of one step of ``config`` at ``batch_size`` images of ``config.input_size``.

    Args:
        config: the model config.
        batch_size: N images per step.
        training: count gradients, AdamW state and saved activations; else an inference peak.
        bf16: activations in bf16 (default: ``config.autocast``, as on CUDA); False for fp32.
        checkpointing: override ``config.backbone.checkpointing``.

    Returns:
        :class:`MemoryEstimate`.
    """
    if batch_size < 1:
        raise ValueError(f"estimate_memory: batch_size must be >= 1; got {batch_size}")
    bf16 = config.autocast if bf16 is None else bf16
    ckpt = config.backbone.checkpointing if checkpointing is None else checkpointing
    act = 2 if bf16 else 4
    params = count_parameters(config)
    param_bytes = params * 4 + (params * 2 if bf16 else 0)
    w, h = config.input_size
    gw, gh = config.grid
    tokens = batch_size * gw * gh
    c = config.backbone.embed_dim
    depth = config.backbone.depth
    stem_saved, stem_peak = _stem_elements(config, batch_size, w, h)
    block_saved, block_stats = _block_elements(config, tokens)
    if not training:
        b = config.backbone
        block_peak = tokens * (5 * c + (2 if b.mlp == "swiglu" else 1) * b.mlp_hidden)
        peak = max(stem_peak, block_peak, _head_elements(config, batch_size))
        return MemoryEstimate(params, param_bytes, 0, 0, peak * act)
    if ckpt and depth:
        blocks = depth * tokens * c * act + block_saved * act + block_stats * 4
    else:
        blocks = depth * (block_saved * act + block_stats * 4)
    final = tokens * c * act + tokens * 8 if config.backbone.final_norm else 0
    activations = stem_saved * act + blocks + final + _head_elements(config, batch_size) * act
    return MemoryEstimate(params, param_bytes, params * 4, params * 8, activations)
