"""Top-down SimCC head (RTMPose style): one token per keypoint, then x / y classifiers.

Shapes: features (N, C, Gh, Gw) -> simcc_x (N, K, Wx), simcc_y (N, K, Wy), with
Wx = round(w * k), Wy = round(h * k) the codec's bins (k = split ratio).

As in RTMPose: a k x k conv makes one map per keypoint (N, K, Gh, Gw); each map is flattened
into a keypoint token and projected to ``token_dim`` (N, K, token_dim); a transformer block
(self-attention over the K keypoint tokens, through the FlashAttention kernel, where RTMPose
uses a GAU) mixes the keypoints; then two linear classifiers give the x and y bin logits.
The grid, hence the input size, is fixed by the flatten; it must equal the codec's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.codecs import SimCCCodec
from pipeline.model.blocks import Block, Norm

__all__ = ["SimCCHead"]


class SimCCHead(nn.Module):
    """SimCC head.

    Args:
        in_channels: C; num_joints: K; grid: [Gw, Gh] token grid at the codec's input size.
        codec: the :class:`~pipeline.codecs.SimCCCodec` (its bins set the classifier widths).
        token_dim: keypoint token width; kernel: the per-keypoint conv's kernel; heads: attention heads.
    """

    def __init__(self, in_channels: int, num_joints: int, grid: tuple[int, int], codec: SimCCCodec,
                 token_dim: int = 128, kernel: int = 7, heads: int = 2) -> None:
        super().__init__()
        self.codec, self.grid = codec, (int(grid[0]), int(grid[1]))
        self.final_layer = nn.Conv2d(in_channels, num_joints, kernel, padding=kernel // 2)
        self.to_token = nn.Linear(self.grid[0] * self.grid[1], token_dim)
        self.block = Block(token_dim, heads, 2 * token_dim)
        self.norm = Norm(token_dim)
        self.cls_x = nn.Linear(token_dim, codec.bins[0])
        self.cls_y = nn.Linear(token_dim, codec.bins[1])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, Gh, Gw) -> (simcc_x (N, K, Wx), simcc_y (N, K, Wy))."""
        gw, gh = self.grid
        if tuple(features.shape[-2:]) != (gh, gw):
            raise ValueError(f"SimCCHead: features must be on the ({gh}, {gw}) grid of input size "
                             f"{list(self.codec.input_size)}; got {tuple(features.shape)}")
        tokens = self.to_token(self.final_layer(features).flatten(2))  # (N, K, token_dim)
        tokens = self.norm(self.block(tokens))
        return self.cls_x(tokens), self.cls_y(tokens)

    def decode(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in input pixels and scores (N, K), via the codec."""
        sx, sy = outputs
        return self.codec.decode(sx.detach().float().cpu(), sy.detach().float().cpu())
