"""Gaussian heatmap codec with UDP's unbiased coordinate transform and DARK / quarter refinement.

Dimensions: N instances (top-down crops), K joints, [w, h] the input image (crop) size in
pixels, [W, H] the heatmap size. Pixel coordinates follow OpenCV: integer values at pixel
centres, x right, y down.

Coordinate transform between input and heatmap (UDP, arXiv 1911.07524):

- ``unbiased=True`` (UDP): x_hm = x_img * (W - 1) / (w - 1). The first and last pixel centres
  of the image map to those of the heatmap, so encode -> decode has no systematic offset, and
  flipping an image flips its heatmap exactly.
- ``unbiased=False`` (SimpleBaseline / mmpose MSRAHeatmap): x_hm = x_img * W / w.

Encoding draws an unnormalized Gaussian exp(-d^2 / (2 sigma^2)) centred at the exact sub-pixel
heatmap location (peak 1). Decoding takes the argmax of each map, then refines it:

- ``"dark"`` (arXiv 1910.06278): blur with a Gaussian of ``blur_kernel_size`` taps, take the
  log and step to the maximum of its second-order Taylor expansion (vectorized over N and K).
  Near the map border the blur shrinks so that it never reads outside the map (see
  ``_refine.py``): DARK's zero padding would pull border keypoints inwards.
- ``"quarter"``: move 0.25 px towards the higher neighbour on each axis.
- ``"none"``: the integer argmax.

Example::

    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0)
    targets = codec.encode(keypoints)                  # keypoints (N, K, 2) in input pixels
    targets.heatmaps.shape                             # (N, K, 64, 48)
    keypoints, scores = codec.decode(targets.heatmaps) # (N, K, 2), (N, K)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.codecs._common import (
    CodecError,
    as_array,
    check_choice,
    check_keypoints,
    check_odd_kernel,
    check_positive,
    check_size,
    resolution_scale,
)
from pipeline.codecs._refine import argmax_2d, dark_offsets_2d, quarter_offsets_2d
from pipeline.skeleton import Skeleton

__all__ = ["HeatmapCodec", "HeatmapTargets", "flip_heatmaps"]

REFINE_MODES = ("dark", "quarter", "none")


@dataclass(frozen=True)
class HeatmapTargets:
    """Training targets from :meth:`HeatmapCodec.encode`.

    Attributes:
        heatmaps: (N, K, H, W) float32, one Gaussian per instance and joint, peak 1; all zero
            for a joint with weight 0.
        keypoint_weights: (N, K) float32, the visibility, 0 where the joint is not visible, not
            finite or its Gaussian misses the heatmap.
    """

    heatmaps: np.ndarray
    keypoint_weights: np.ndarray


class HeatmapCodec:
    """Encode keypoints to Gaussian heatmaps and decode heatmaps back to sub-pixel keypoints.

    Args:
        input_size: [w, h] of the network input in pixels.
        heatmap_size: [W, H] of the heatmaps.
        sigma: Gaussian standard deviation in heatmap pixels.
        refine: "dark" (default), "quarter" or "none".
        blur_kernel_size: odd number of taps of DARK's blur (1 = no blur); the default 11 gives
            a blur sigma of 2, matching sigma = 2 targets as DARK recommends.
        unbiased: use UDP's (size - 1) scaling (default) instead of size scaling.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] = (48, 64),
        sigma: float = 2.0,
        refine: str = "dark",
        blur_kernel_size: int = 11,
        unbiased: bool = True,
    ) -> None:
        name = type(self).__name__
        self.input_size = check_size(input_size, name, "input_size")
        self.heatmap_size = check_size(heatmap_size, name, "heatmap_size")
        self.sigma = check_positive(sigma, name, "sigma")
        self.refine = check_choice(refine, name, "refine", REFINE_MODES)
        self.blur_kernel_size = check_odd_kernel(blur_kernel_size, name, "blur_kernel_size")
        if not isinstance(unbiased, bool):
            raise CodecError(f"{name}: unbiased must be True or False; got {unbiased!r}")
        if unbiased and (min(self.input_size) < 2 or min(self.heatmap_size) < 2):
            raise CodecError(f"{name}: unbiased=True needs input_size and heatmap_size of at least 2 x 2")
        self.unbiased = unbiased

    def __repr__(self) -> str:
        return (
            f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma}, refine={self.refine!r}, blur_kernel_size={self.blur_kernel_size}, "
            f"unbiased={self.unbiased})"
        )

    @property
    def scale(self) -> np.ndarray:
        """(2,) heatmap pixels per input pixel along x and y: x_hm = x_img * scale[0]."""
        return resolution_scale(self.input_size, self.heatmap_size, self.unbiased)

    def to_heatmap(self, keypoints: np.ndarray) -> np.ndarray:
        """Input pixels (..., 2) -> heatmap pixels (..., 2)."""
        return np.asarray(keypoints, dtype=np.float64) * self.scale

    def to_input(self, keypoints: np.ndarray) -> np.ndarray:
        """Heatmap pixels (..., 2) -> input pixels (..., 2)."""
        return np.asarray(keypoints, dtype=np.float64) / self.scale

    def encode(self, keypoints: Any, keypoints_visible: Any = None) -> HeatmapTargets:
        """Gaussian heatmap targets.

        Args:
            keypoints: (N, K, 2) or (K, 2) input pixels; NaN marks a missing joint.
            keypoints_visible: (N, K) / (K,) weights in [0, 1], default all 1.

        Returns:
            :class:`HeatmapTargets` with heatmaps (N, K, H, W) and keypoint_weights (N, K);
            N = 1 for a (K, 2) input.
        """
        kp, vis, _ = check_keypoints(keypoints, keypoints_visible, type(self).__name__)
        mu = self.to_heatmap(kp)  # (N, K, 2)
        hw, hh = self.heatmap_size
        radius = 3.0 * self.sigma
        finite = np.isfinite(mu).all(axis=-1)
        # mmpose's rule: the 3-sigma square of the Gaussian must overlap the heatmap.
        near = (mu[..., 0] > -radius - 1) & (mu[..., 0] < hw + radius) & (mu[..., 1] > -radius - 1)
        near &= mu[..., 1] < hh + radius
        weights = np.where(finite & near, vis, 0.0)
        mu = np.where(finite[..., None], mu, 0.0)
        two_var = 2.0 * self.sigma**2
        gx = np.exp(-((np.arange(hw) - mu[..., 0:1]) ** 2) / two_var)  # (N, K, W)
        gy = np.exp(-((np.arange(hh) - mu[..., 1:2]) ** 2) / two_var)  # (N, K, H)
        gx *= (weights > 0)[..., None]
        heatmaps = (gy[..., :, None] * gx[..., None, :]).astype(np.float32)
        return HeatmapTargets(heatmaps=heatmaps, keypoint_weights=weights.astype(np.float32))

    def decode(self, heatmaps: Any) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints from heatmaps: batched argmax, then the configured refinement.

        Args:
            heatmaps: (N, K, H, W) or (K, H, W), numpy or torch.

        Returns:
            keypoints: (N, K, 2) float32 input pixels (N = 1 for a (K, H, W) input); NaN where
                the map's maximum is <= 0 (missing).
            scores: (N, K) float32, the map's maximum; 0 where missing.
        """
        hm = as_array(heatmaps, type(self).__name__, "heatmaps")
        if hm.ndim == 3:
            hm = hm[None]
        hw, hh = self.heatmap_size
        if hm.ndim != 4 or hm.shape[2:] != (hh, hw):
            raise CodecError(
                f"{type(self).__name__}: heatmaps must be (N, K, {hh}, {hw}) or (K, {hh}, {hw}) "
                f"for heatmap_size [W, H] = {list(self.heatmap_size)}; got shape {hm.shape}"
            )
        n, k = hm.shape[:2]
        maps = hm.reshape(n * k, hh, hw)
        x, y, val = argmax_2d(maps)
        xy = np.stack([x, y], axis=1).astype(np.float64)
        if self.refine == "dark":
            xy += dark_offsets_2d(maps, x, y, self.blur_kernel_size)
        elif self.refine == "quarter":
            xy += quarter_offsets_2d(maps, x, y)
        keypoints = self.to_input(xy)
        missing = ~(val > 0)
        keypoints[missing] = np.nan
        scores = np.where(missing, 0.0, val)
        return keypoints.reshape(n, k, 2).astype(np.float32), scores.reshape(n, k).astype(np.float32)


def flip_heatmaps(heatmaps: Any, skeleton: Skeleton) -> np.ndarray:
    """Heatmaps of the mirrored image: mirror along W and swap the skeleton's flip pairs.

    Exact under the unbiased (UDP) transform: pixel x maps to W - 1 - x. Use it to average a
    network's output on an image and on its mirror (flip test).

    Args:
        heatmaps: (..., K, H, W).
        skeleton: gives K and the flip pairs.

    Returns:
        (..., K, H, W) copy.
    """
    hm = as_array(heatmaps, "flip_heatmaps", "heatmaps")
    if hm.ndim < 3 or hm.shape[-3] != skeleton.num_joints:
        raise CodecError(
            f"flip_heatmaps: heatmaps must be (..., {skeleton.num_joints}, H, W) for {skeleton.name}; "
            f"got shape {hm.shape}"
        )
    return hm[..., list(skeleton.flip_indices), :, ::-1].copy()
