"""2-D positions for token grids of any size and aspect ratio.

- :class:`RoPE2D`: axial rotary embedding. Head channels d and d + D/2 form a rotated pair; the
  first D/4 pairs turn by the token's column x times a frequency, the next D/4 by its row y.
  Attention scores then depend only on the offset between two tokens, so any grid size and
  aspect ratio works and nothing is learned. Applied to q and k (not v).
- :class:`AbsolutePositions`: a learned table at a reference grid [Gw0, Gh0] (ViT / ViTPose),
  bicubically interpolated to each image's grid; used as is when the grid matches.

Token order everywhere is row-major: token i of a (Gh, Gw) grid is at x = i % Gw, y = i // Gw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AbsolutePositions", "RoPE2D", "apply_rope", "grid_coords"]


def grid_coords(grids: list[tuple[int, int]] | tuple[tuple[int, int], ...], device: torch.device | None = None
                ) -> torch.Tensor:
    """Token coordinates of one or more grids, concatenated.

    Args:
        grids: [(Gh, Gw), ...] per image (height first, as tensor shapes).

    Returns:
        (T, 2) float32 [x, y] with T = sum(Gh * Gw), row-major per grid.
    """
    parts = []
    for gh, gw in grids:
        ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        parts.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
    return torch.cat(parts).float() if parts else torch.zeros(0, 2, device=device)


class RoPE2D(nn.Module):
    """Axial 2-D rotary position embedding.

    Args:
        head_dim: D, divisible by 4.
        base: frequency base; frequencies are base^(-j / (D/4)) for j < D/4.
    """

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE2D: head_dim must be divisible by 4; got {head_dim}")
        quarter = head_dim // 4
        freqs = base ** (-torch.arange(quarter, dtype=torch.float32) / quarter)
        self.register_buffer("freqs", freqs, persistent=False)
        self.head_dim = head_dim

    def tables(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables for tokens at ``coords``.

        Args:
            coords: (T, 2) [x, y] token coordinates.

        Returns:
            cos, sin: (T, D) float32 (each angle repeated for both members of its pair).
        """
        freqs = self.freqs.to(coords.device)
        angles = torch.cat([coords[:, :1] * freqs, coords[:, 1:2] * freqs], dim=1)  # (T, D/2)
        angles = torch.cat([angles, angles], dim=1)
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (d, d + D/2) of x by the tables' angles.

    Args:
        x: (..., T, H, D) queries or keys (T tokens, H heads).
        cos, sin: (T, D) from :meth:`RoPE2D.tables`.

    Returns:
        (..., T, H, D) in x's dtype.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    return x * cos + rotated * sin


class AbsolutePositions(nn.Module):
    """Learned absolute position embeddings, interpolated to any grid.

    Args:
        grid: [Gw0, Gh0] of the stored table.
        dim: C.
    """

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.table = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, gh: int, gw: int) -> torch.Tensor:
        """(Gh * Gw, C) embeddings for a (Gh, Gw) grid, row-major."""
        gw0, gh0 = self.grid
        if (gh, gw) == (gh0, gw0):
            return self.table[0]
        table = self.table.reshape(1, gh0, gw0, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(gh, gw), mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(gh * gw, -1)

    def for_grids(self, grids: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> torch.Tensor:
        """(T, C) embeddings of several (Gh, Gw) grids concatenated (a packed batch)."""
        return torch.cat([self(gh, gw) for gh, gw in grids])
