"""Training batches: an endless, seeded stream over rendered samples, with augmentation and targets.

Batch ``step`` is a pure function of ``(seed, step)``: its sample indices and every sample's
augmentation come from ``numpy.random.default_rng([seed, step, ...])``. So a resumed run sees
exactly the batches the uninterrupted run would have seen, whatever the number of DataLoader
workers. :class:`BatchStream` is a map-style dataset whose item ``step`` is a whole batch; the
trainer reads it through a ``DataLoader`` whose workers do the rendering and augmentation.

Sources (``data.source``):

- ``pool`` (fast on a CPU): a pre-rendered pool of ``pool_size`` samples
  (:mod:`pipeline.training.pool`), re-augmented on the fly; each batch draws random members.
- ``stream``: every sample of every batch is rendered fresh in the workers (sample index
  ``step * batch_size + i``) -- an endless stream of new scenes, slower to produce.

The held-out set is a fixed, un-augmented set rendered from ``heldout_seed``.

Tensors: images (B, 3, h, w) float32, ImageNet mean / std normalized RGB; top-down keypoints
(B, K, 2) in input pixels; weights (B, K).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from pipeline.config import param
from pipeline.model.config import ModelConfig
from pipeline.skeleton import get_skeleton
from pipeline.training.augment import (
    AugmentConfig,
    box_from_keypoints,
    crop_affine,
    flip_joints,
    occlude,
    photometric,
    random_affine,
    truncate,
    warp_image,
    warp_points,
)
from pipeline.training.pool import Pool, SceneConfig, load_or_build_pool, render_sample

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BatchStream", "DataConfig", "HeldOut", "bottomup_sample",
           "build_heldout", "normalize_images", "topdown_sample"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig:
    """Where training samples come from and how they are augmented."""

    scene: SceneConfig = param(SceneConfig(), "the rendered scenes")
    augment: AugmentConfig = param(AugmentConfig(), "augmentation ranges")
    source: Literal["pool", "stream"] = param(
        "pool", "pool: re-augment a pre-rendered pool; stream: render every sample")
    pool_size: int = param(12000, "samples in the pre-rendered pool")
    pool_seed: int = param(1, "render seed of the pool / stream")
    render_workers: int = param(2, "processes that render the pool")
    loader_workers: int = param(1, "DataLoader worker processes (augmentation / stream rendering)")
    heldout_size: int = param(400, "samples in the held-out set")
    heldout_seed: int = param(777, "render seed of the held-out set (never used for training)")
    heldout_people: tuple[int, int] = param((1, 4), "people per held-out scene, inclusive range")
    padding: float = param(1.25, "top-down: crop box = joint box x padding")
    packed_sizes: tuple[tuple[int, int], ...] = param(
        (), "top-down: crop sizes [w, h] drawn per sample for packed variable-size batches (empty: fixed size)")
    cache_dir: str = param("tmp/train/cache", "pool cache folder (relative to the working directory)")


def normalize_images(images: np.ndarray) -> torch.Tensor:
    """(B, h, w, 3) uint8 RGB -> (B, 3, h, w) float32, ImageNet mean / std normalized."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _inside(kp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    with np.errstate(invalid="ignore"):
        return (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)


def topdown_sample(rng: np.random.Generator | None, image: np.ndarray, uv: np.ndarray, visible: np.ndarray,
                   in_frame: np.ndarray, input_size: tuple[int, int], aug: AugmentConfig,
                   flip_indices: tuple[int, ...], padding: float = 1.25) -> dict[str, np.ndarray]:
    """One top-down crop: the joint box (of in-frame joints) padded, jittered, warped to ``input_size``.

    Args:
        rng: None for the held-out (un-augmented) crop.
        image: (h, w, 3) uint8; uv: (K, 2); visible, in_frame: (K,) bool.

    Returns:
        image (h', w', 3) uint8; keypoints (K, 2) crop pixels; weights (K,) float32 training
        weights (in frame and inside the crop, occluded joints included); visible (K,) bool
        (not occluded, inside the crop; the joints the metrics score); norm: the tight joint
        box's longer side in crop pixels (PCK normaliser).
    """
    w_in, h_in = input_size
    if rng is not None:
        image, visible, in_frame = truncate(rng, image, uv, visible, in_frame, aug)
    box = box_from_keypoints(uv, in_frame, w_in / h_in, padding)
    if box is None:
        h, w = image.shape[:2]
        box = np.array([(w - 1) / 2, (h - 1) / 2, w - 1.0, h - 1.0])
    crop, kp, vis, inf = _warp_augment(rng, image, box, uv, visible, in_frame, input_size, aug, flip_indices)
    inside = _inside(kp, input_size)
    pts = kp[inf & inside]
    norm = float(np.ptp(pts, axis=0).max()) if len(pts) >= 2 else float(max(input_size)) / padding
    return {"image": np.ascontiguousarray(crop), "keypoints": kp.astype(np.float32),
            "weights": (inf & inside).astype(np.float32), "visible": vis & inside, "norm": np.float32(max(norm, 1.0))}


def _warp_augment(rng: np.random.Generator | None, image: np.ndarray, box: np.ndarray, uv: np.ndarray,
                  visible: np.ndarray, in_frame: np.ndarray, input_size: tuple[int, int], aug: AugmentConfig,
                  flip_indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Warp ``box`` of ``image`` to ``input_size`` with (when ``rng``) random affine, flip and photometric
    augmentation. ``uv`` (..., K, 2), ``visible`` / ``in_frame`` (..., K) follow the warp and the flip's
    left/right swap. Returns (image, keypoints, visible, in_frame)."""
    rot, flip = 0.0, False
    if rng is not None:
        box, rot, flip = random_affine(rng, box, aug)
    affine = crop_affine(box, input_size, rot)
    out = warp_image(image, affine, input_size)
    kp = warp_points(uv.astype(np.float64), affine)
    vis, inf = visible.copy(), in_frame.copy()
    if flip:
        out = out[:, ::-1]
        kp[..., 0] = (input_size[0] - 1) - kp[..., 0]
        kp = flip_joints(kp, flip_indices)
        vis, inf = vis[..., list(flip_indices)], inf[..., list(flip_indices)]
    if rng is not None:
        out = occlude(rng, photometric(rng, out, aug), aug)
    return out, kp, vis, inf


def bottomup_sample(rng: np.random.Generator | None, image: np.ndarray, uv: np.ndarray, visible: np.ndarray,
                    in_frame: np.ndarray, input_size: tuple[int, int], aug: AugmentConfig,
                    flip_indices: tuple[int, ...]) -> dict[str, np.ndarray]:
    """One bottom-up image: the whole render, scaled / rotated / shifted / flipped to ``input_size``.

    Args:
        uv: (P, K, 2); visible, in_frame: (P, K).

    Returns:
        image (h', w', 3) uint8; keypoints (P, K, 2); weights (P, K) float32 (in frame and inside
        the output, occluded included); visible (P, K) bool (not occluded, inside).
    """
    h, w = image.shape[:2]
    box = np.array([(w - 1) / 2, (h - 1) / 2, w - 1.0, h - 1.0])
    out, kp, vis, inf = _warp_augment(rng, image, box, uv, visible, in_frame, input_size, aug, flip_indices)
    inside = _inside(kp, input_size)
    return {"image": np.ascontiguousarray(out), "keypoints": kp.astype(np.float32),
            "weights": (inf & inside).astype(np.float32), "visible": vis & inside}


class BatchStream(torch.utils.data.Dataset):
    """Item ``step`` = training batch ``step`` (a dict of tensors); see the module docstring."""

    def __init__(self, model_config: ModelConfig, data: DataConfig, batch_size: int, seed: int,
                 pool: Pool | None = None) -> None:
        self.model_config, self.data, self.batch_size, self.seed, self.pool = model_config, data, batch_size, seed, pool
        self.flip_indices = get_skeleton(model_config.skeleton).flip_indices
        self.bottomup = model_config.head.kind == "bottomup"
        if data.source == "pool" and pool is None:
            raise ValueError("BatchStream: source 'pool' needs the pool")
        self._codecs: dict[tuple[int, int], Any] = {}

    def __len__(self) -> int:
        return 2**62

    def _raw(self, rng: np.random.Generator, step: int, i: int) -> tuple[np.ndarray, ...]:
        if self.data.source == "pool":
            j = int(rng.integers(len(self.pool)))
            p = self.pool
            return p.images[j], p.uv[j], p.visible[j], p.in_frame[j]
        return render_sample(self.data.scene, self.data.pool_seed, step * self.batch_size + i)[:4]

    def codec_for(self, size: tuple[int, int]) -> Any:
        """The head's codec at input ``size`` (variable sizes in packed batches)."""
        if size not in self._codecs:
            from pipeline.model.pose_model import build_head

            self._codecs[size] = build_head(replace(self.model_config, input_size=size)).codec
        return self._codecs[size]

    def __getitem__(self, step: int) -> dict[str, Any]:
        cfg = self.model_config
        samples, sizes = [], []
        for i in range(self.batch_size):
            rng = np.random.default_rng([self.seed, int(step), i])
            raw = self._raw(rng, int(step), i)
            if self.bottomup:
                samples.append(bottomup_sample(rng, *raw, cfg.input_size, self.data.augment, self.flip_indices))
                sizes.append(cfg.input_size)
            else:
                size = cfg.input_size
                if self.data.packed_sizes:
                    size = tuple(self.data.packed_sizes[int(rng.integers(len(self.data.packed_sizes)))])
                samples.append(topdown_sample(rng, *raw, size, self.data.augment, self.flip_indices,
                                              self.data.padding))
                sizes.append(size)
        return collate(samples, sizes, cfg, self.codec_for)


def collate(samples: list[dict[str, np.ndarray]], sizes: list[tuple[int, int]], cfg: ModelConfig,
            codec_for: Any) -> dict[str, Any]:
    """Stack samples and encode the head's targets (a list per sample when sizes differ)."""
    kind = cfg.head.kind
    if len(set(sizes)) > 1:  # packed: one tensor per crop
        out: dict[str, Any] = {"images": [normalize_images(s["image"][None])[0] for s in samples],
                               "heatmaps": [], "weights": []}
        for s, size in zip(samples, sizes):
            t = codec_for(size).encode(s["keypoints"][None], s["weights"][None])
            out["heatmaps"].append(torch.from_numpy(t.heatmaps[0]))
            out["weights"].append(torch.from_numpy(t.keypoint_weights[0]))
        out["packed"] = True
        return out
    codec = codec_for(sizes[0])
    out = {"images": normalize_images(np.stack([s["image"] for s in samples])), "packed": False}
    if kind == "bottomup":
        hms, idx, wts = [], [], []
        for s in samples:
            t = codec.encode(s["keypoints"], s["weights"])
            hms.append(t.heatmaps)
            idx.append(t.keypoint_indices)
            wts.append(t.keypoint_weights)
        out["heatmaps"] = torch.from_numpy(np.stack(hms))
        out["tag_indices"] = torch.from_numpy(np.stack(idx))
        out["weights"] = torch.from_numpy(np.stack(wts))
        return out
    kp = np.stack([s["keypoints"] for s in samples])
    wt = np.stack([s["weights"] for s in samples])
    t = codec.encode(kp, wt)
    if kind == "heatmap":
        out["heatmaps"] = torch.from_numpy(t.heatmaps)
    else:
        out["x_targets"] = torch.from_numpy(t.x_targets)
        out["y_targets"] = torch.from_numpy(t.y_targets)
    out["weights"] = torch.from_numpy(t.keypoint_weights)
    return out


@dataclass
class HeldOut:
    """The fixed held-out set, un-augmented, at the model's input size.

    Attributes:
        images: (N, h, w, 3) uint8. keypoints: top-down (N, K, 2) / bottom-up (N, P, K, 2).
        visible: the scored joints, (N, K) / (N, P, K) bool. weights: in frame (occluded included).
        norm: top-down (N,) PCK normaliser (the tight joint box's longer side, crop pixels).
        area: bottom-up (N, P) visible silhouette areas in input pixels (OKS scale), 0 for empty slots.
    """

    images: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    weights: np.ndarray
    norm: np.ndarray | None = None
    area: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def build_heldout(model_config: ModelConfig, data: DataConfig, size: int | None = None,
                  workers: int | None = None, cache: bool = True) -> HeldOut:
    """Render (or load from the cache) the held-out set: ``heldout_seed``, ``heldout_people`` per scene."""
    scene = replace(data.scene, people=tuple(data.heldout_people))
    n = data.heldout_size if size is None else size
    pool = load_or_build_pool(data.cache_dir if cache else None, scene, n, data.heldout_seed,
                              data.render_workers if workers is None else workers)
    flip = get_skeleton(model_config.skeleton).flip_indices
    samples = []
    for i in range(len(pool)):
        raw = (pool.images[i], pool.uv[i], pool.visible[i], pool.in_frame[i])
        if model_config.head.kind == "bottomup":
            samples.append(bottomup_sample(None, *raw, model_config.input_size, data.augment, flip))
        else:
            samples.append(topdown_sample(None, *raw, model_config.input_size, data.augment, flip, data.padding))
    stack = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    area = None
    if model_config.head.kind == "bottomup":  # silhouettes scale with the (uniform) resize to the input
        sx = (model_config.input_size[0] - 1) / (data.scene.render_size[0] - 1)
        sy = (model_config.input_size[1] - 1) / (data.scene.render_size[1] - 1)
        area = pool.area * np.float32(sx * sy)
    return HeldOut(stack["image"], stack["keypoints"], stack["visible"], stack["weights"], stack.get("norm"), area)
