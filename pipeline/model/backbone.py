"""The backbone: a stem to a token grid, then pre-norm transformer blocks.

- Conv stem (default): ``len(channels)`` conv3x3 stride-2 layers, each with BatchNorm (or
  GroupNorm) and SiLU, then a 1x1 projection to C; stride 2 ** len(channels) (8 or 16).
- Patch stem (plain ViT / ViTPose): one conv with kernel = stride = patch size (and optional
  zero padding, 2 in ViTPose).

Positions are 2-D RoPE (inside attention) or learned absolute embeddings interpolated to each
grid. Shapes: images (N, 3, h, w) -> features (N, C, Gh, Gw); a packed batch of crops
[(3, h_i, w_i), ...] -> :class:`~pipeline.model.packing.PackedTokens` (T, C), where each crop's
tokens attend only to each other (varlen FlashAttention) and no padding is computed.

With ``checkpointing`` each block's activations are recomputed in backward (only block inputs
are kept); gradients are unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pipeline.model.blocks import Block, Norm, init_weights
from pipeline.model.config import BackboneConfig
from pipeline.model.packing import PackedTokens, cu_seqlens_of, group_by_size
from pipeline.model.positions import AbsolutePositions, RoPE2D, grid_coords

__all__ = ["Backbone", "ConvStem", "PatchStem"]


class ConvStem(nn.Module):
    """Strided conv3x3 + norm + SiLU layers, then a 1x1 projection. (N, 3, h, w) -> (N, C, Gh, Gw)."""

    def __init__(self, channels: tuple[int, ...], embed_dim: int, norm: str = "batch", in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False))
            layers.append(nn.BatchNorm2d(c) if norm == "batch" else nn.GroupNorm(math.gcd(8, c), c))
            layers.append(nn.SiLU(inplace=True))
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.layers(x))

    def forward_pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(N, 3, h, w) -> (the projected map (N, C, Gh, Gw), {stride: (N, c_i, h / stride, w / stride)})."""
        pyramid: dict[int, torch.Tensor] = {}
        stride = 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i % 3 == 2:  # after each conv -> norm -> SiLU
                stride *= 2
                pyramid[stride] = x
        return self.proj(x), pyramid


class PatchStem(nn.Module):
    """ViT patch embedding: one conv, kernel = stride = patch size. (N, 3, h, w) -> (N, C, Gh, Gw)."""

    def __init__(self, patch_size: int, embed_dim: int, padding: int = 0, in_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Backbone(nn.Module):
    """Hybrid conv-stem transformer, or a plain ViT, per :class:`~pipeline.model.config.BackboneConfig`."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        s = config.stem
        if s.kind == "conv":
            self.stem: nn.Module = ConvStem(s.channels, config.embed_dim, s.norm)
        else:
            self.stem = PatchStem(s.patch_size, config.embed_dim, s.patch_padding)
        self.rope = RoPE2D(config.head_dim, config.rope_base) if config.positions == "rope" else None
        self.pos = AbsolutePositions(config.abs_grid, config.embed_dim) if config.positions == "abs" else None
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_hidden, config.mlp, config.norm, config.norm_eps,
                  config.qkv_bias)
            for _ in range(config.depth)
        )
        self.norm = Norm(config.embed_dim, config.norm, config.norm_eps) if config.final_norm else None
        self.checkpointing = config.checkpointing
        self.apply(init_weights)

    @property
    def stride(self) -> int:
        return self.config.stem.stride

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def _run_blocks(self, x: torch.Tensor, coords: torch.Tensor, cu_seqlens: torch.Tensor | None,
                    max_seqlen: int) -> torch.Tensor:
        cos = sin = None
        if self.rope is not None:
            cos, sin = self.rope.tables(coords)
        use_ckpt = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_ckpt:
                x = checkpoint(block, x, cos, sin, cu_seqlens, max_seqlen, use_reentrant=False)
            else:
                x = block(x, cos, sin, cu_seqlens, max_seqlen)
        return self.norm(x) if self.norm is not None else x

    def forward_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens of a fixed-size batch.

        Args:
            images: (N, 3, h, w).

        Returns:
            tokens (N, Gh * Gw, C) row-major, and the grid (Gh, Gw).
        """
        if images.ndim != 4:
            raise ValueError(f"Backbone: images must be (N, 3, h, w); got {tuple(images.shape)}")
        return self._tokens_of(self.stem(images))

    def _tokens_of(self, fmap: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        gh, gw = fmap.shape[-2:]
        x = fmap.flatten(2).transpose(1, 2)
        if self.pos is not None:
            x = x + self.pos(gh, gw).to(x.dtype)
        coords = grid_coords([(gh, gw)], x.device)
        return self._run_blocks(x, coords, None, gh * gw), (gh, gw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> feature map (N, C, Gh, Gw)."""
        x, (gh, gw) = self.forward_tokens(images)
        return x.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(N, 3, h, w) -> (feature map (N, C, Gh, Gw), the conv stem's maps {stride: (N, c, h/stride, w/stride)}).

        Only for a conv stem (the bottom-up head's skips).
        """
        if not isinstance(self.stem, ConvStem):
            raise ValueError("Backbone.forward_features: stem features need a conv stem")
        if images.ndim != 4:
            raise ValueError(f"Backbone: images must be (N, 3, h, w); got {tuple(images.shape)}")
        fmap, pyramid = self.stem.forward_pyramid(images)
        x, (gh, gw) = self._tokens_of(fmap)
        return x.transpose(1, 2).reshape(x.shape[0], -1, gh, gw), pyramid

    def forward_packed(self, images: list[torch.Tensor]) -> PackedTokens:
        """Crops of different sizes as one packed sequence (no resizing, no padding).

        Args:
            images: S tensors (3, h_i, w_i). Same-size crops share one stem call (so BatchNorm in
                training mode sees them together; in eval mode every crop is independent).

        Returns:
            :class:`PackedTokens` with tokens (T, C), cu_seqlens (S + 1,), grids [(Gh_i, Gw_i)].
        """
        if not images:
            raise ValueError("Backbone.forward_packed: need at least one image")
        maps: list[torch.Tensor | None] = [None] * len(images)
        for _, idx in group_by_size(images).items():
            out = self.stem(torch.stack([images[i] for i in idx]))
            for j, i in enumerate(idx):
                maps[i] = out[j]
        grids = tuple((int(m.shape[-2]), int(m.shape[-1])) for m in maps)
        x = torch.cat([m.flatten(1).transpose(0, 1) for m in maps])  # (T, C)
        if self.pos is not None:
            x = x + self.pos.for_grids(grids).to(x.dtype)
        cu = cu_seqlens_of([gh * gw for gh, gw in grids], x.device)
        packed = PackedTokens(x, cu, grids)
        coords = grid_coords(grids, x.device)
        return packed.replace_tokens(self._run_blocks(x, coords, cu, packed.max_seqlen))
