"""Bottom-up head: heatmaps + associative-embedding tag maps at 1/4 input resolution.

Shapes: features (N, C, Gh, Gw) on the token grid (stride s) -> heatmaps (N, K, H, W) and tags
(N, K, H, W, L), H = Gh * f, W = Gw * f with f = s / 4, matching the codec's [W, H].

Upsampling from the token grid (``upsample``):

- "pixelshuffle" (default): conv1x1 to channels * f^2, then PixelShuffle(f) (sub-pixel conv).
- "deconv": log2(f) x [ConvTranspose2d(4, stride 2, padding 1) -> BatchNorm -> ReLU].
- "bilinear": conv1x1 to channels, then bilinear upsampling by f.

Then conv3x3 -> BatchNorm -> ReLU -> conv1x1 to K heatmaps and K * L tags. The head owns an
:class:`~pipeline.codecs.AssociativeEmbeddingCodec` and only calls its ``decode``.

With ``skip_channels`` (c8, c4) the conv stem's stride-8 and stride-4 maps are added before the
refinement, FPN-style: conv1x1 projections of each (the stride-8 one bilinearly upsampled by 2),
then a residual conv3x3 -> BN -> ReLU -> conv3x3 -> BN block. A token grid at stride 16 is
coarse next to a person 40 px tall; the stem's fine maps put the peaks on the joints. The
projections and the block's last BatchNorm start at zero, so a head with skips starts out
computing exactly what the same head without them computes (a trained skip-less head can be
fine-tuned into one).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.codecs import AEPersons, AssociativeEmbeddingCodec

__all__ = ["BottomUpHead"]


class BottomUpHead(nn.Module):
    """Heatmaps + AE tags.

    Args:
        in_channels: C; num_joints: K; upsample: f = s / 4 (power of two >= 1);
        codec: the associative-embedding codec; mode: "pixelshuffle", "deconv" or "bilinear";
        channels: width at 1/4 resolution; tag_dim: L; skip_channels: (c8, c4) of the conv stem's
        stride-8 and stride-4 maps, or None for no skips.
    """

    def __init__(self, in_channels: int, num_joints: int, upsample: int, codec: AssociativeEmbeddingCodec,
                 mode: str = "pixelshuffle", channels: int = 64, tag_dim: int = 1,
                 skip_channels: tuple[int, int] | None = None) -> None:
        super().__init__()
        if upsample < 1 or upsample & (upsample - 1):
            raise ValueError(f"BottomUpHead: upsample must be a power of two >= 1; got {upsample}")
        self.codec, self.num_joints, self.tag_dim, self.mode = codec, num_joints, tag_dim, mode
        f = upsample
        if mode == "pixelshuffle":
            self.up: nn.Module = nn.Sequential(nn.Conv2d(in_channels, channels * f * f, 1), nn.PixelShuffle(f))
        elif mode == "deconv":
            layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 1)] if f == 1 else []
            c = in_channels
            for _ in range(int(math.log2(f))):
                layers += [nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1, bias=False),
                           nn.BatchNorm2d(channels), nn.ReLU()]
                c = channels
            self.up = nn.Sequential(*layers)
        elif mode == "bilinear":
            self.up = nn.Sequential(nn.Conv2d(in_channels, channels, 1),
                                    nn.Upsample(scale_factor=f, mode="bilinear", align_corners=False))
        else:
            raise ValueError(f"BottomUpHead: mode must be 'pixelshuffle', 'deconv' or 'bilinear'; got {mode!r}")
        self.refine = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(channels), nn.ReLU())
        self.out = nn.Conv2d(channels, num_joints * (1 + tag_dim), 1)
        self.uses_skips = skip_channels is not None
        if skip_channels is not None:
            c8, c4 = skip_channels
            self.skip8 = nn.Conv2d(c8, channels, 1)
            self.skip4 = nn.Conv2d(c4, channels, 1)
            self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                      nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(channels))
            for conv in (self.skip8, self.skip4):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            nn.init.zeros_(self.fuse[-1].weight)

    def forward(self, features: torch.Tensor,
                skips: dict[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, Gh, Gw) -> (heatmaps (N, K, H, W), tags (N, K, H, W, L)).

        ``skips`` (heads with skips): the stem maps {8: (N, c8, H / 2, W / 2), 4: (N, c4, H, W)}.
        """
        x = self.up(features)
        if self.uses_skips:
            if skips is None:
                raise ValueError("BottomUpHead: this head adds the stem's stride-8 and stride-4 maps; pass skips")
            s8 = nn.functional.interpolate(self.skip8(skips[8]), size=x.shape[-2:], mode="bilinear",
                                           align_corners=False)
            x = x + s8 + self.skip4(skips[4])
            x = x + self.fuse(x)
        out = self.out(self.refine(x))
        n, _, h, w = out.shape
        k = self.num_joints
        heatmaps = out[:, :k]
        tags = out[:, k:].reshape(n, k, self.tag_dim, h, w).permute(0, 1, 3, 4, 2)
        return heatmaps, tags

    def decode(self, outputs: tuple[torch.Tensor, torch.Tensor]) -> list[AEPersons]:
        """Persons per image, via the codec's grouping."""
        heatmaps, tags = outputs
        persons = self.codec.decode(heatmaps.detach().float().cpu(), tags.detach().float().cpu())
        return persons if isinstance(persons, list) else [persons]
