"""Networks that turn images into keypoints: bottom-up (whole frames) and top-down (person crops).

Images are (h, w, 3) uint8 BGR as the stream readers return them; each estimator converts to
the network's RGB, ImageNet mean / std input (``pipeline.training.data.normalize_images``), so
inference sees exactly what training saw. Keypoints come back as (..., J, 3) float32: x, y and
a score clipped to [0, 1], missing = NaN, NaN, 0.

- :class:`BottomUpEstimator`: the associative-embedding model on the whole frame, warped to a
  configurable network resolution (the training warp: the full frame stretched onto the
  input), grouped by the codec, mapped back to frame pixels.
- :class:`TorchTopDown`: a heatmap or SimCC model on person crops. ``native=True`` (heatmap
  head only) cuts every crop at its own size, rounded to the stem stride, and runs them as one
  packed sequence (``PoseModel.forward_packed``); otherwise crops are warped to the model's
  input size and batched.
- :class:`OnnxTopDown` (:mod:`pipeline.pose2d.onnx`): any ONNX model with RTMPose's contract.
"""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np
import torch

from pipeline.codecs import AssociativeEmbeddingCodec, HeatmapCodec, flip_heatmaps
from pipeline.skeleton import get_skeleton
from pipeline.training.augment import crop_affine, warp_image
from pipeline.training.data import normalize_images
from pipeline.training.evaluate import bottomup_maps

__all__ = ["BottomUpEstimator", "TopDownEstimator", "TorchTopDown", "crop_size_for", "invert_affine",
           "to_rgb"]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 BGR -> RGB (a grey (h, w) image is expanded)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The (2, 3) inverse of a (2, 3) affine."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def _map_back(keypoints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., J, 3) network pixels + score -> image pixels + score through the inverse of ``affine``."""
    inv = invert_affine(affine)
    out = np.array(keypoints, np.float32, copy=True)
    out[..., :2] = keypoints[..., :2] @ inv[:, :2].T + inv[:, 2]
    out[..., 2] = np.clip(np.nan_to_num(out[..., 2], nan=0.0), 0.0, 1.0)
    missing = ~np.isfinite(out[..., :2]).all(-1) | (out[..., 2] <= 0)
    out[missing, :2] = np.nan
    out[missing, 2] = 0.0
    return out


class TopDownEstimator(Protocol):
    """Keypoints of one person per box."""

    joints: int
    aspect: float  # crop box width / height

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """image (h, w, 3) BGR, boxes (N, 4) cx, cy, w, h -> (N, J, 3) image pixels + score."""
        ...


def crop_size_for(box: np.ndarray, stride: int, min_side: int, max_side: int) -> tuple[int, int]:
    """Native crop size [w, h] of a box: its pixel size rounded to ``stride``, the longer side in [min, max]."""
    bw, bh = float(box[2]), float(box[3])
    longer = max(bw, bh)
    scale = min(1.0, max_side / longer) if longer > max_side else max(1.0, min_side / longer)
    w = max(stride, int(round(bw * scale / stride)) * stride)
    h = max(stride, int(round(bh * scale / stride)) * stride)
    return w, h


class TorchTopDown:
    """A top-down :class:`~pipeline.model.PoseModel` (heatmap or SimCC head) on person crops.

    Args:
        model: the eval-mode model (on its device).
        native: pack crops at their native sizes (heatmap head only); else warp to input_size.
        native_min_side, native_max_side: bounds of a native crop's longer side, pixels; max None =
            the longer side of the model's input size (the scale it was trained at).
        batch_size: crops per forward pass in fixed mode.
        flip_test: heatmap head: average each crop's heatmaps with its mirror's (twice the work).
    """

    def __init__(self, model: Any, native: bool = True, native_min_side: int = 64, native_max_side: int | None = None,
                 batch_size: int = 32, flip_test: bool = False) -> None:
        self.model = model
        cfg = model.config
        self.kind = cfg.head.kind
        if self.kind not in ("heatmap", "simcc"):
            raise ValueError(f"TorchTopDown: the model has a {self.kind!r} head; top-down needs heatmap or simcc")
        self.native = native and self.kind == "heatmap"
        self.input_size = tuple(cfg.input_size)
        self.joints = cfg.num_joints
        self.aspect = self.input_size[0] / self.input_size[1]
        self.stride = cfg.backbone.stem.stride
        self.max_side = native_max_side if native_max_side is not None else max(self.input_size)
        self.min_side = min(native_min_side, self.max_side)
        self.batch_size = batch_size
        self.flip_test = flip_test and self.kind == "heatmap"
        self.skeleton = get_skeleton(cfg.skeleton)
        self.device = next(model.parameters()).device
        self._codecs: dict[tuple[int, int], HeatmapCodec] = {}

    def _codec(self, size: tuple[int, int]) -> HeatmapCodec:
        if size not in self._codecs:
            base: HeatmapCodec = self.model.codec
            grid = self.model.config.backbone.stem.grid(*size)
            f = self.model.config.upsample_factor
            self._codecs[size] = HeatmapCodec(input_size=size, heatmap_size=(grid[0] * f, grid[1] * f),
                                              sigma=base.sigma, refine=base.refine,
                                              blur_kernel_size=base.blur_kernel_size, unbiased=base.unbiased)
        return self._codecs[size]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.joints, 3), np.float32)
        rgb = to_rgb(image)
        sizes = [crop_size_for(b, self.stride, self.min_side, self.max_side) if self.native else self.input_size
                 for b in boxes]
        affines = [crop_affine(b, s) for b, s in zip(boxes, sizes)]
        crops = [warp_image(rgb, a, s) for a, s in zip(affines, sizes)]
        out = np.zeros((len(boxes), self.joints, 3), np.float32)
        if self.native:
            tensors = [normalize_images(c[None])[0].to(self.device) for c in crops]
            if self.flip_test:
                tensors += [t.flip(-1) for t in tensors]
            heatmaps = [hm.float().cpu().numpy() for hm in self.model.forward_packed(tensors)]
            for i, size in enumerate(sizes):
                hm = heatmaps[i]
                if self.flip_test:
                    hm = (hm + flip_heatmaps(heatmaps[len(sizes) + i], self.skeleton)) / 2
                kp, score = self._codec(size).decode(hm)
                out[i, :, :2], out[i, :, 2] = kp[0], score[0]
        else:
            for s in range(0, len(crops), self.batch_size):
                x = normalize_images(np.stack(crops[s:s + self.batch_size])).to(self.device)
                pred = self.model(x)
                if self.flip_test:
                    flipped = flip_heatmaps(self.model(x.flip(-1)).float().cpu().numpy(), self.skeleton)
                    pred = (pred.float().cpu().numpy() + flipped) / 2
                kp, score = self.model.codec.decode(pred) if self.flip_test else self.model.decode(pred)
                out[s:s + len(kp), :, :2], out[s:s + len(kp), :, 2] = kp, score
        return np.stack([_map_back(o, a) for o, a in zip(out, affines)])


class BottomUpEstimator:
    """The associative-embedding :class:`~pipeline.model.PoseModel` on whole frames.

    Args:
        model: eval-mode model with a bottomup head.
        input_size: [w, h] network resolution (multiples of the stem stride); None = the model's.
        min_person_score: drop persons whose mean joint score is below this.
        min_joints: drop persons with fewer found joints.
        flip_test: also run the mirrored frames; average the heatmaps, group on both tag sets
            (:func:`~pipeline.codecs.merge_flip_test`). Twice the network work.
    """

    def __init__(self, model: Any, input_size: tuple[int, int] | None = None, min_person_score: float = 0.1,
                 min_joints: int = 3, flip_test: bool = False) -> None:
        cfg = model.config
        if cfg.head.kind != "bottomup":
            raise ValueError(f"BottomUpEstimator: the model has a {cfg.head.kind!r} head; expected bottomup")
        self.model = model
        self.input_size = tuple(input_size) if input_size else tuple(cfg.input_size)
        stride = cfg.backbone.stem.stride
        if self.input_size[0] % stride or self.input_size[1] % stride:
            raise ValueError(f"bottom-up input size {list(self.input_size)} must be multiples of the model's "
                             f"stride {stride}")
        grid = cfg.backbone.stem.grid(*self.input_size)
        f = cfg.upsample_factor
        base: AssociativeEmbeddingCodec = model.codec
        self.codec = AssociativeEmbeddingCodec(
            input_size=self.input_size, heatmap_size=(grid[0] * f, grid[1] * f), sigma=base.sigma,
            skeleton=base.skeleton, max_people=base.max_people, nms_kernel=base.nms_kernel,
            detection_threshold=base.detection_threshold, tag_threshold=base.tag_threshold,
            use_detection_val=base.use_detection_val, adjust=base.adjust, fill_missing=base.fill_missing,
            unbiased=base.unbiased)
        self.joints = cfg.num_joints
        self.min_person_score, self.min_joints = min_person_score, min_joints
        self.flip_test = flip_test
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Frames [(h, w, 3) BGR] -> per frame (P, J, 3) image pixels + score."""
        if not frames:
            return []
        affines, inputs = [], []
        for frame in frames:
            h, w = frame.shape[:2]
            a = crop_affine(np.array([(w - 1) / 2, (h - 1) / 2, w - 1.0, h - 1.0]), self.input_size)
            affines.append(a)
            inputs.append(warp_image(to_rgb(frame), a, self.input_size))
        x = normalize_images(np.stack(inputs)).to(self.device)
        persons = self.codec.decode(*bottomup_maps(self.model, x, self.flip_test))
        persons = persons if isinstance(persons, list) else [persons]
        out = []
        for p, a in zip(persons, affines):
            kp = _map_back(p.keypoints, a) if len(p) else np.zeros((0, self.joints, 3), np.float32)
            found = kp[..., 2] > 0
            keep = (found.sum(-1) >= self.min_joints) & (kp[..., 2].mean(-1) >= self.min_person_score)
            out.append(kp[keep])
        return out
