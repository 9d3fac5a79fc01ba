"""Top-down heatmap head: ViTPose's "simple" and "classic" decoders; it owns a HeatmapCodec.

Shapes: features (N, C, Gh, Gw) on the token grid (stride s) -> heatmaps (N, K, H, W) with
H = Gh * s / 4, W = Gw * s / 4 (1/4 input resolution), matching the codec's [W, H].

- "simple" (ViTPose): ReLU -> bilinear upsample by s / 4 (align_corners=False) -> conv3x3 to K.
- "classic" (SimpleBaseline / ViTPose classic): log2(s / 4) x [ConvTranspose2d(4, stride 2,
  padding 1, no bias) -> BatchNorm -> ReLU] -> conv1x1 to K.

The head only calls the codec's ``decode``; keypoint geometry stays in the codec.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.codecs import HeatmapCodec

__all__ = ["HeatmapHead"]


class HeatmapHead(nn.Module):
    """Heatmap head.

    Args:
        in_channels: C of the backbone features.
        num_joints: K.
        upsample: s / 4, a power of two >= 1.
        codec: the :class:`~pipeline.codecs.HeatmapCodec` whose heatmap_size the output has.
        decoder: "simple" or "classic".
        deconv_channels: channels of the classic decoder's deconv layers.
    """

    def __init__(self, in_channels: int, num_joints: int, upsample: int, codec: HeatmapCodec,
                 decoder: str = "simple", deconv_channels: int = 256) -> None:
        super().__init__()
        if upsample < 1 or upsample & (upsample - 1):
            raise ValueError(f"HeatmapHead: upsample must be a power of two >= 1; got {upsample}")
        self.codec, self.decoder, self.upsample_factor = codec, decoder, upsample
        if decoder == "simple":
            self.activation = nn.ReLU()
            self.upsampling = (nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False)
                               if upsample > 1 else nn.Identity())
            self.conv = nn.Conv2d(in_channels, num_joints, 3, padding=1)
        elif decoder == "classic":
            layers: list[nn.Module] = []
            c = in_channels
            for _ in range(int(math.log2(upsample))):
                layers += [nn.ConvTranspose2d(c, deconv_channels, 4, stride=2, padding=1, bias=False),
                           nn.BatchNorm2d(deconv_channels), nn.ReLU()]
                c = deconv_channels
            self.deconvs = nn.Sequential(*layers)
            self.conv = nn.Conv2d(c, num_joints, 1)
        else:
            raise ValueError(f"HeatmapHead: decoder must be 'simple' or 'classic'; got {decoder!r}")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, Gh, Gw) -> heatmaps (N, K, Gh * f, Gw * f), f = upsample."""
        if self.decoder == "simple":
            return self.conv(self.upsampling(self.activation(features)))
        return self.conv(self.deconvs(features))

    def decode(self, heatmaps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in input pixels and scores (N, K), via the codec."""
        return self.codec.decode(heatmaps.detach().float().cpu())
