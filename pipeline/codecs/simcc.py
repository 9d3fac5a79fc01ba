"""SimCC codec (arXiv 2107.03332): keypoints as two 1-D classifications over sub-pixel bins.

Dimensions: N instances, K joints, [w, h] the input image (crop) size in pixels; with split
ratio k there are Wx = round(w * k) bins along x and Wy = round(h * k) along y. Bin i is
centred on pixel i / k (integer pixel values at pixel centres, as OpenCV).

Labels (``smoothing``):

- ``"gaussian"``: exp(-(i - x * k)^2 / (2 sigma^2)) with sigma in bins, peak 1 (or unit area
  with ``normalize=True``), centred at the exact sub-bin position.
- ``"standard"``: one-hot at round(x * k), label-smoothed:
  (1 - label_smooth_weight) * one_hot + label_smooth_weight / bins.

Alongside the labels, ``encode`` returns the KL-divergence targets (each label row divided by
its sum, a distribution over bins) that :func:`simcc_kl_loss` compares with the network's
logits.

Decoding: batched argmax of each row; x = argmax_x / k, y = argmax_y / k; the score is
min(max_x, max_y), and a score <= 0 means the joint is missing. ``use_dark`` adds a 1-D DARK
refinement (blur, log, Newton step), vectorized over all rows, with the same border rule as
the heatmap codec.

Example::

    codec = SimCCCodec(input_size=(192, 256), split_ratio=2.0, sigma=(4.9, 5.66))
    t = codec.encode(keypoints)                        # keypoints (N, K, 2) in input pixels
    t.x_labels.shape, t.y_labels.shape                 # (N, K, 384), (N, K, 512)
    keypoints, scores = codec.decode(t.x_labels, t.y_labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.codecs._common import (
    CodecError,
    as_array,
    check_choice,
    check_fraction,
    check_keypoints,
    check_odd_kernel,
    check_positive,
    check_size,
)
from pipeline.codecs._refine import argmax_1d, dark_offsets_1d

__all__ = ["SimCCCodec", "SimCCTargets", "simcc_kl_loss"]

SMOOTHING_TYPES = ("gaussian", "standard")


@dataclass(frozen=True)
class SimCCTargets:
    """Training targets from :meth:`SimCCCodec.encode`.

    Attributes:
        x_labels: (N, K, Wx) float32 labels along x.
        y_labels: (N, K, Wy) float32 labels along y.
        x_targets: (N, K, Wx) float32 KL targets, each row sums to 1 (all 0 where weight is 0).
        y_targets: (N, K, Wy) float32 KL targets.
        keypoint_weights: (N, K) float32, 0 where invisible, not finite or outside the bins.
    """

    x_labels: np.ndarray
    y_labels: np.ndarray
    x_targets: np.ndarray
    y_targets: np.ndarray
    keypoint_weights: np.ndarray


def _default_blur(sigma: float) -> int:
    """mmpose's DARK kernel size for a SimCC sigma: about 6 sigma taps, odd, at least 3."""
    size = max(3, int((sigma * 20 - 7) // 3))
    return size - (size % 2 == 0)


class SimCCCodec:
    """Encode keypoints to SimCC x / y labels and decode 1-D logits or labels to keypoints.

    Args:
        input_size: [w, h] of the network input in pixels.
        split_ratio: k > 0, bins per pixel; Wx = round(w * k), Wy = round(h * k).
        sigma: Gaussian label sigma in bins, one value or (sigma_x, sigma_y).
        smoothing: "gaussian" (default) or "standard" (label-smoothed one-hot).
        label_smooth_weight: epsilon in [0, 1) for "standard".
        normalize: divide Gaussian labels by sigma * sqrt(2 pi) (unit area instead of peak 1).
        use_dark: refine the argmax with 1-D DARK.
        blur_kernel_size: DARK blur taps per axis, one odd int or an (x, y) pair; default about
            6 sigma (mmpose's rule), so the blur matches the label width.
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        split_ratio: float = 2.0,
        sigma: float | tuple[float, float] = 6.0,
        smoothing: str = "gaussian",
        label_smooth_weight: float = 0.0,
        normalize: bool = False,
        use_dark: bool = False,
        blur_kernel_size: int | tuple[int, int] | None = None,
    ) -> None:
        name = type(self).__name__
        self.input_size = check_size(input_size, name, "input_size")
        self.split_ratio = check_positive(split_ratio, name, "split_ratio")
        self.sigma = check_positive(sigma, name, "sigma", pair=True)
        self.smoothing = check_choice(smoothing, name, "smoothing", SMOOTHING_TYPES)
        self.label_smooth_weight = check_fraction(label_smooth_weight, name, "label_smooth_weight")
        for flag, value in (("normalize", normalize), ("use_dark", use_dark)):
            if not isinstance(value, bool):
                raise CodecError(f"{name}: {flag} must be True or False; got {value!r}")
        self.normalize = normalize
        self.use_dark = use_dark
        if blur_kernel_size is None:
            blur = (_default_blur(self.sigma[0]), _default_blur(self.sigma[1]))
        elif isinstance(blur_kernel_size, (tuple, list)) and len(blur_kernel_size) == 2:
            blur = tuple(blur_kernel_size)
        else:
            blur = (blur_kernel_size, blur_kernel_size)
        self.blur_kernel_size = tuple(check_odd_kernel(b, name, "blur_kernel_size") for b in blur)
        self.bins = (
            round(self.input_size[0] * self.split_ratio),
            round(self.input_size[1] * self.split_ratio),
        )
        if min(self.bins) < 1:
            raise CodecError(f"{name}: input_size * split_ratio must give at least one bin; got {self.bins}")

    def __repr__(self) -> str:
        return (
            f"SimCCCodec(input_size={self.input_size}, split_ratio={self.split_ratio}, sigma={self.sigma}, "
            f"smoothing={self.smoothing!r}, use_dark={self.use_dark})"
        )

    def encode(self, keypoints: Any, keypoints_visible: Any = None) -> SimCCTargets:
        """SimCC labels and KL targets.

        Args:
            keypoints: (N, K, 2) or (K, 2) input pixels; NaN marks a missing joint.
            keypoints_visible: (N, K) / (K,) weights in [0, 1], default all 1.

        Returns:
            :class:`SimCCTargets`; N = 1 for a (K, 2) input.
        """
        kp, vis, _ = check_keypoints(keypoints, keypoints_visible, type(self).__name__)
        mu = kp * self.split_ratio  # (N, K, 2) in bins
        centre = np.round(mu)
        bins = np.array(self.bins)
        inside = np.isfinite(mu).all(axis=-1) & ((centre >= 0) & (centre < bins)).all(axis=-1)
        weights = np.where(inside, vis, 0.0)
        on = (weights > 0)[..., None]
        mu = np.where(on, mu, 0.0)
        labels = []
        for axis in (0, 1):
            pos = np.arange(self.bins[axis])
            if self.smoothing == "gaussian":
                sigma = self.sigma[axis]
                lab = np.exp(-((pos - mu[..., axis : axis + 1]) ** 2) / (2 * sigma**2))
                if self.normalize:
                    lab /= sigma * np.sqrt(2 * np.pi)
            else:
                eps = self.label_smooth_weight
                lab = np.where(pos == centre[..., axis : axis + 1], 1.0 - eps, 0.0) + eps / self.bins[axis]
            labels.append(lab * on)
        targets = [lab / np.where(on, lab.sum(axis=-1, keepdims=True), 1.0) for lab in labels]
        f32 = np.float32
        return SimCCTargets(
            x_labels=labels[0].astype(f32),
            y_labels=labels[1].astype(f32),
            x_targets=targets[0].astype(f32),
            y_targets=targets[1].astype(f32),
            keypoint_weights=weights.astype(f32),
        )

    def decode(self, simcc_x: Any, simcc_y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints from x / y bin scores (logits or labels).

        Args:
            simcc_x: (N, K, Wx) or (K, Wx), numpy or torch.
            simcc_y: (N, K, Wy) or (K, Wy).

        Returns:
            keypoints: (N, K, 2) float32 input pixels; NaN where the score is <= 0.
            scores: (N, K) float32 min(max_x, max_y); 0 where missing.
        """
        name = type(self).__name__
        sx = as_array(simcc_x, name, "simcc_x")
        sy = as_array(simcc_y, name, "simcc_y")
        if sx.ndim == 2 and sy.ndim == 2:
            sx, sy = sx[None], sy[None]
        if sx.ndim != 3 or sy.shape != (*sx.shape[:2], self.bins[1]) or sx.shape[2] != self.bins[0]:
            raise CodecError(
                f"{name}: simcc_x must be (N, K, {self.bins[0]}) and simcc_y (N, K, {self.bins[1]}) for "
                f"input_size {list(self.input_size)} and split_ratio {self.split_ratio}; "
                f"got {sx.shape} and {sy.shape}"
            )
        n, k = sx.shape[:2]
        coords, maxima = [], []
        for axis, rows in enumerate((sx.reshape(n * k, self.bins[0]), sy.reshape(n * k, self.bins[1]))):
            index, value = argmax_1d(rows)
            pos = index.astype(np.float64)
            if self.use_dark:
                pos += dark_offsets_1d(rows, index, self.blur_kernel_size[axis])
            coords.append(pos / self.split_ratio)
            maxima.append(value)
        keypoints = np.stack(coords, axis=1)
        scores = np.minimum(maxima[0], maxima[1]).astype(np.float64)
        missing = ~(scores > 0)
        keypoints[missing] = np.nan
        scores[missing] = 0.0
        return keypoints.reshape(n, k, 2).astype(np.float32), scores.reshape(n, k).astype(np.float32)


def simcc_kl_loss(
    pred_x: Any,
    pred_y: Any,
    target_x: Any,
    target_y: Any,
    keypoint_weights: Any = None,
    beta: float = 1.0,
) -> Any:
    """KL(target || softmax(beta * pred)) summed over bins, averaged over x / y, N and K (torch).

    Args:
        pred_x, pred_y: (N, K, Wx), (N, K, Wy) logits, torch tensors.
        target_x, target_y: the same shapes, :class:`SimCCTargets` x_targets / y_targets (rows
            sum to 1); numpy arrays are converted.
        keypoint_weights: (N, K) weights, default 1; the mean is weighted by them.
        beta: logit scale (mmpose's KLDiscretLoss ``beta``).

    Returns:
        0-d torch tensor, differentiable in pred_x and pred_y.
    """
    import torch

    pred_x = torch.as_tensor(pred_x)
    dev, dt = pred_x.device, pred_x.dtype
    total = 0.0
    for pred, target in ((pred_x, target_x), (torch.as_tensor(pred_y), target_y)):
        target = torch.as_tensor(target, device=dev, dtype=dt)
        if pred.shape != target.shape:
            raise CodecError(
                f"simcc_kl_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        log_p = torch.log_softmax(pred * beta, dim=-1)
        cross = torch.where(target > 0, target * log_p, torch.zeros_like(log_p))  # 0 log 0 = 0
        total = total + (torch.special.xlogy(target, target) - cross).sum(dim=-1) * 0.5  # (N, K)
    w = (
        torch.ones_like(total)
        if keypoint_weights is None
        else torch.as_tensor(keypoint_weights, device=dev, dtype=dt)
    )
    return (total * w).sum() / w.sum().clamp_min(1e-12)
