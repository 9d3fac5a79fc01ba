"""Native-resolution packing: person crops of different sizes as one token stream.

Instead of resizing and padding every crop to one shape, each crop keeps its size; its tokens
(Gh_i * Gw_i of them, row-major) are laid end to end, and ``cu_seqlens`` records where each
crop starts. The varlen FlashAttention kernel reads those bounds, so attention stays inside
each crop and no padding token is ever computed.

Example::

    packed = backbone.forward_packed([crop_a, crop_b, crop_c])   # crops (3, h_i, w_i)
    packed.tokens.shape        # (T, C), T = sum of the three grids' token counts
    packed.cu_seqlens          # tensor([0, L_a, L_a + L_b, T], dtype=int32)
    maps = unpack(packed)      # [(C, Gh_i, Gw_i), ...]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PackedTokens", "cu_seqlens_of", "group_by_size", "pack", "unpack"]


@dataclass(frozen=True)
class PackedTokens:
    """A packed batch of token grids.

    Attributes:
        tokens: (T, C), sequence s at rows cu_seqlens[s] : cu_seqlens[s + 1].
        cu_seqlens: (S + 1,) int32 cumulative token counts, first 0, last T.
        grids: S (Gh, Gw) pairs, one per sequence (height first, as tensor shapes).
    """

    tokens: torch.Tensor
    cu_seqlens: torch.Tensor
    grids: tuple[tuple[int, int], ...]

    @property
    def max_seqlen(self) -> int:
        """Longest sequence (tokens)."""
        return max((gh * gw for gh, gw in self.grids), default=0)

    @property
    def lengths(self) -> list[int]:
        return [gh * gw for gh, gw in self.grids]

    def replace_tokens(self, tokens: torch.Tensor) -> PackedTokens:
        """The same layout with new (T, C') tokens."""
        return PackedTokens(tokens, self.cu_seqlens, self.grids)


def cu_seqlens_of(lengths: list[int], device: torch.device | None = None) -> torch.Tensor:
    """(S + 1,) int32 cumulative offsets [0, l0, l0 + l1, ...] of sequence lengths."""
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + int(n))
    return torch.tensor(offsets, dtype=torch.int32, device=device)


def group_by_size(images: list[torch.Tensor]) -> dict[tuple[int, int], list[int]]:
    """Indices of same-size images, {(h, w): [i, ...]} in first-seen order (for batched convs)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault((int(img.shape[-2]), int(img.shape[-1])), []).append(i)
    return groups


def pack(feature_maps: list[torch.Tensor]) -> PackedTokens:
    """Flatten feature maps [(C, Gh_i, Gw_i), ...] row-major into one (T, C) stream."""
    if not feature_maps:
        raise ValueError("pack: need at least one feature map")
    grids = tuple((int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps)
    tokens = torch.cat([f.flatten(1).transpose(0, 1) for f in feature_maps])
    return PackedTokens(tokens, cu_seqlens_of([gh * gw for gh, gw in grids], tokens.device), grids)


def unpack(packed: PackedTokens) -> list[torch.Tensor]:
    """The inverse of :func:`pack`: [(C, Gh_i, Gw_i), ...]."""
    out = []
    for chunk, (gh, gw) in zip(torch.split(packed.tokens, packed.lengths), packed.grids):
        out.append(chunk.transpose(0, 1).reshape(-1, gh, gw))
    return out
