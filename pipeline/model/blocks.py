"""Pre-norm transformer block: x + Attn(Norm(x)), then x + MLP(Norm(x)).

Every hot op goes through :mod:`pipeline.kernels` (LayerNorm/RMSNorm, FlashAttention, fused
bias + GELU/SwiGLU), which picks the Triton kernel or the PyTorch reference per the dispatch
mode. Tokens come in two layouts:

- fixed: x (N, L, C), every sequence of length L; ``cu_seqlens = None``.
- packed: x (T, C) with ``cu_seqlens`` (S + 1,) int32 and ``max_seqlen`` (see ``packing.py``).

Positions: ``rope = (cos, sin)``, each (L, D) for a fixed batch or (T, D) for a packed one, or
None (absolute positions were added to the tokens before the first block).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.kernels import flash_attention, flash_attention_varlen, layer_norm, linear_activation, rms_norm
from pipeline.model.positions import apply_rope

__all__ = ["Attention", "Block", "Mlp", "Norm", "init_weights"]


class Norm(nn.Module):
    """LayerNorm or RMSNorm over the last dim, through the fused kernel. (..., C) -> (..., C).

    The parameter names are ``weight`` and ``bias`` (RMSNorm has no bias), as ``nn.LayerNorm``.
    """

    def __init__(self, dim: int, kind: str = "layernorm", eps: float = 1e-6) -> None:
        super().__init__()
        if kind not in ("layernorm", "rmsnorm"):
            raise ValueError(f"Norm: kind must be 'layernorm' or 'rmsnorm'; got {kind!r}")
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layernorm" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return layer_norm(x, self.weight, self.bias, self.eps)
        return rms_norm(x, self.weight, None, self.eps)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    Args:
        dim: C; num_heads: H (head dim D = C / H); qkv_bias: bias of the qkv projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cu_seqlens: torch.Tensor | None = None, max_seqlen: int = 0) -> torch.Tensor:
        """(N, L, C) or packed (T, C) -> the same shape."""
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # (..., 3, H, D)
        q, k, v = qkv.unbind(-3)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cu_seqlens is None:
            out = flash_attention(q, k, v)
        else:
            out = flash_attention_varlen(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
        return self.proj(out.flatten(-2))


class Mlp(nn.Module):
    """fc2(act(fc1(x))) with GELU, or the SwiGLU gated form fc2(silu(a) * g), [a, g] = fc1(x).

    The bias of fc1 is fused into the activation kernel on the Triton path.
    """

    def __init__(self, dim: int, hidden: int, kind: str = "gelu") -> None:
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"Mlp: kind must be 'gelu' or 'swiglu'; got {kind!r}")
        self.kind = kind
        self.fc1 = nn.Linear(dim, 2 * hidden if kind == "swiglu" else hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_activation(x, self.fc1.weight, self.fc1.bias, self.kind))


class Block(nn.Module):
    """Pre-norm transformer block.

    Args:
        dim: C; num_heads: H; mlp_hidden: MLP hidden width; mlp: "gelu" or "swiglu";
        norm: "layernorm" or "rmsnorm"; eps: norm epsilon; qkv_bias: bias of qkv.
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, mlp: str = "gelu", norm: str = "layernorm",
                 eps: float = 1e-6, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = Norm(dim, norm, eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = Norm(dim, norm, eps)
        self.mlp = Mlp(dim, mlp_hidden, mlp)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None, sin: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None, max_seqlen: int = 0) -> torch.Tensor:
        """x (N, L, C) or packed (T, C); cos/sin (L or T, D) or None -> the same shape as x."""
        rope = (cos, sin) if cos is not None else None
        x = x + self.attn(self.norm1(x), rope, cu_seqlens, max_seqlen)
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module) -> None:
    """ViT-style init: truncated-normal linear weights (std 0.02), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)

