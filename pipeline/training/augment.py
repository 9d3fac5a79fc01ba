"""Augmentation for training crops and images: affine (scale, rotation, shift, flip), photometric, occluders.

All functions take an explicit ``numpy.random.Generator``, so a sample's augmentation is a pure
function of its seed (exact resume; identical batches with any number of DataLoader workers).

Shapes: images (h, w, 3) uint8 RGB; keypoints (..., K, 2) pixels (NaN = missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import param

__all__ = ["AugmentConfig", "box_from_keypoints", "crop_affine", "flip_joints", "occlude", "photometric",
           "truncate", "warp_image", "warp_points"]


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation ranges (set ``enabled: false`` for none)."""

    enabled: bool = param(True, "apply augmentation to training samples")
    scale: tuple[float, float] = param((0.75, 1.3), "box scale factor range (>1 zooms out)")
    rotation_deg: float = param(30.0, "max rotation, degrees (uniform in +-)")
    rotation_prob: float = param(0.6, "probability of a rotation")
    shift: float = param(0.08, "max box-centre shift, fraction of the box size")
    flip_prob: float = param(0.5, "probability of a horizontal flip (left/right joints swap)")
    color_jitter: float = param(0.3, "brightness / contrast / saturation jitter strength")
    blur_prob: float = param(0.25, "probability of a Gaussian blur")
    noise_prob: float = param(0.3, "probability of extra Gaussian sensor noise")
    occluder_prob: float = param(0.4, "probability of pasting 1-2 random occluders")
    truncate_prob: float = param(0.0, "top-down: probability of cutting the person at a simulated image border")
    truncate_fraction: tuple[float, float] = param((0.15, 0.6), "top-down: range of the fraction of the "
                                                   "person's joint box cut away")


def flip_joints(keypoints: np.ndarray, flip_indices: tuple[int, ...] | list[int]) -> np.ndarray:
    """Swap left/right joints along axis -2 (K) of (..., K, C) arrays (the mirrored image's labels)."""
    return np.asarray(keypoints)[..., list(flip_indices), :]


def box_from_keypoints(uv: np.ndarray, valid: np.ndarray, aspect: float, padding: float = 1.25) -> np.ndarray | None:
    """Top-down crop box (cx, cy, w, h) around valid joints, padded and fixed to ``aspect`` = w / h.

    Args:
        uv: (K, 2) pixels. valid: (K,) bool.

    Returns:
        (4,) float64, or None with fewer than 2 valid joints.
    """
    pts = uv[valid & np.isfinite(uv).all(-1)]
    if len(pts) < 2:
        return None
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, w * padding, h * padding])


def crop_affine(box: np.ndarray, out_size: tuple[int, int], rotation_deg: float = 0.0) -> np.ndarray:
    """(2, 3) affine mapping image pixels to a crop of ``out_size`` [w, h] showing ``box`` (cx, cy, w, h).

    Pixel centres map to pixel centres (UDP): the box's left edge centre -> x = 0, right -> w - 1.
    Rotation is about the box centre, counter-clockwise in the image for positive angles.
    """
    cx, cy, bw, bh = (float(v) for v in box)
    ow, oh = out_size
    sx, sy = (ow - 1) / bw, (oh - 1) / bh
    a = np.deg2rad(rotation_deg)
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, s], [-s, c]])
    lin = np.diag([sx, sy]) @ rot
    t = np.array([(ow - 1) / 2, (oh - 1) / 2]) - lin @ np.array([cx, cy])
    return np.concatenate([lin, t[:, None]], axis=1)


def warp_points(uv: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., 2) pixels through a (2, 3) affine (NaN stays NaN)."""
    return uv @ affine[:, :2].T + affine[:, 2]


def warp_image(image: np.ndarray, affine: np.ndarray, out_size: tuple[int, int],
               border: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Bilinear warp of an (h, w, 3) image to ``out_size`` [w, h]."""
    return cv2.warpAffine(image, affine, tuple(out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def random_affine(rng: np.random.Generator, box: np.ndarray, cfg: AugmentConfig) -> tuple[np.ndarray, float, bool]:
    """A jittered box, a rotation (degrees) and whether to flip, drawn per ``cfg``."""
    if not cfg.enabled:
        return box, 0.0, False
    scale = rng.uniform(*cfg.scale)
    shift = rng.uniform(-cfg.shift, cfg.shift, size=2) * box[2:]
    box = np.array([box[0] + shift[0], box[1] + shift[1], box[2] * scale, box[3] * scale])
    rot = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg) if rng.random() < cfg.rotation_prob else 0.0
    return box, float(rot), bool(rng.random() < cfg.flip_prob)


def photometric(rng: np.random.Generator, image: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Colour jitter (brightness, contrast, saturation, per-channel gain), blur and noise; uint8 in, uint8 out."""
    if not cfg.enabled:
        return image
    j = cfg.color_jitter
    img = image.astype(np.float32)
    img = img * rng.uniform(1 - j, 1 + j) * rng.uniform(1 - j / 3, 1 + j / 3, size=3).astype(np.float32)
    mean = img.mean()
    img = (img - mean) * rng.uniform(1 - j, 1 + j) + mean
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(1 - j, 1 + j)
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < cfg.noise_prob:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2.0, 8.0))
    return np.clip(img, 0, 255).astype(np.uint8)


# Which image border a truncation simulates: left, right, top, bottom. People close to a camera are
# mostly cut at the bottom (legs) or at the sides.
_TRUNCATE_SIDES_P = (0.2, 0.2, 0.1, 0.5)


def truncate(rng: np.random.Generator, image: np.ndarray, uv: np.ndarray, visible: np.ndarray,
             in_frame: np.ndarray, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut person 0 at a simulated image border (a person partly out of frame, as close cameras see them).

    With probability ``cfg.truncate_prob`` a side is drawn and the part of ``image`` beyond a line
    that removes a fraction (``cfg.truncate_fraction``) of the in-frame joint box is set to black,
    as the crop warp fills pixels outside a real frame. Joints beyond the line leave the frame.

    Args:
        image: (h, w, 3) uint8. uv: (K, 2) pixels. visible, in_frame: (K,) bool.

    Returns:
        (image, visible, in_frame), new arrays only where something was cut. No random draw is
        made when ``truncate_prob`` is 0, so configs without truncation keep their exact batches.
    """
    if not cfg.enabled or cfg.truncate_prob <= 0 or rng.random() >= cfg.truncate_prob:
        return image, visible, in_frame
    ok = in_frame & np.isfinite(uv).all(-1)
    side = int(rng.choice(4, p=_TRUNCATE_SIDES_P))
    frac = rng.uniform(*cfg.truncate_fraction)
    if ok.sum() < 4:
        return image, visible, in_frame
    lo, hi = uv[ok].min(0), uv[ok].max(0)
    axis = 0 if side < 2 else 1
    span = hi[axis] - lo[axis]
    if span < 2.0:
        return image, visible, in_frame
    size = image.shape[1 - axis]  # w for a vertical line, h for a horizontal one
    coord = uv[:, axis]
    if side % 2:  # right / bottom: keep coordinates below the line
        line = int(np.clip(np.round(hi[axis] - frac * span), 1, size - 1))
        keep = coord < line - 0.5
        cut = slice(line, None)
    else:  # left / top: keep coordinates above the line
        line = int(np.clip(np.round(lo[axis] + frac * span), 1, size - 1))
        keep = coord >= line - 0.5
        cut = slice(None, line)
    img = image.copy()
    img[(slice(None), cut) if axis == 0 else cut] = 0
    keep &= np.isfinite(coord)
    return img, visible & keep, in_frame & keep


def occlude(rng: np.random.Generator, image: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Paste 1-2 random occluders (solid ellipses or rectangles, or a patch of the image itself)."""
    if not cfg.enabled or rng.random() >= cfg.occluder_prob:
        return image
    img = image.copy()
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        ow, oh = int(rng.uniform(0.1, 0.4) * w), int(rng.uniform(0.1, 0.35) * h)
        x, y = int(rng.integers(0, max(w - ow, 1))), int(rng.integers(0, max(h - oh, 1)))
        kind = rng.random()
        if kind < 0.4:
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cv2.ellipse(img, (x + ow // 2, y + oh // 2), (max(ow // 2, 1), max(oh // 2, 1)),
                        float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind < 0.7:
            img[y:y + oh, x:x + ow] = rng.integers(0, 256, size=3, dtype=np.uint8)
        else:
            sx, sy = int(rng.integers(0, max(w - ow, 1))), int(rng.integers(0, max(h - oh, 1)))
            img[y:y + oh, x:x + ow] = image[sy:sy + oh, sx:sx + ow]
    return img
