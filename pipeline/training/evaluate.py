"""Held-out metrics: top-down PCK and pixel error; bottom-up person recall / precision at an OKS threshold.

Top-down (crops of one person, input pixels):

- ``pck``: fraction of scored joints (visible: not occluded, inside the crop) whose predicted
  position is within ``alpha`` x the tight joint box's longer side (``HeldOut.norm``) of the
  truth -- PCK@0.05 with bbox normalisation, as mmpose's ``PCKAccuracy`` with ``norm_item='bbox'``.
- ``mean_px``: mean Euclidean error of the scored joints, input pixels.
- ``swap_share``: the share of misses that sit within the threshold of the mirror joint
  (a left/right swap).

Bottom-up (whole images, input pixels): predicted persons are matched one-to-one to the true
persons by OKS (Hungarian), with COCO's per-joint sigmas and COCO's person scale s^2 = the
segment area: the pixels of the person's visible silhouette in the render (``HeldOut.area``;
without it, 0.53 x the area of the box of its in-frame joints).
A true person counts when at least ``min_visible`` joints are visible; one with fewer is
ignored (neither a miss nor, when matched, a false positive). ``recall`` = matched / counted,
``precision`` = matched / (predictions not matched to ignored persons), ``joint_px`` = mean
error of visible joints of matched persons.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pipeline.codecs.associative_embedding import merge_flip_test
from pipeline.codecs.heatmap import flip_heatmaps
from pipeline.skeleton import get_skeleton
from pipeline.training.data import HeldOut, normalize_images

__all__ = ["COCO_SIGMAS", "bottomup_maps", "bottomup_metrics", "evaluate", "oks", "predict_bottomup", "predict_topdown",
           "topdown_metrics"]

COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
                        0.89, 0.89]) / 10.0


@torch.no_grad()
def predict_topdown(model: torch.nn.Module, images: np.ndarray, batch_size: int = 64,
                    flip_test: bool = False) -> np.ndarray:
    """(N, K, 2) predicted crop pixels for (N, h, w, 3) uint8 crops (flip test: heatmap head only)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    skeleton = get_skeleton(model.config.skeleton)
    for s in range(0, len(images), batch_size):
        x = normalize_images(images[s:s + batch_size]).to(device)
        pred = model(x)
        if flip_test and model.config.head.kind == "heatmap":
            flipped = model(x.flip(-1)).float().cpu().numpy()
            pred = (pred.float().cpu().numpy() + flip_heatmaps(flipped, skeleton)) / 2
            pred = torch.from_numpy(pred)
        kp, _ = model.decode(pred)
        out.append(kp)
    model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def topdown_metrics(pred: np.ndarray, heldout: HeldOut, alpha: float = 0.05,
                    flip_indices: tuple[int, ...] | None = None) -> dict[str, float]:
    """PCK@alpha, mean pixel error and the left/right-swap share of misses (see the module docstring)."""
    gt, mask = heldout.keypoints, heldout.visible
    dist = np.linalg.norm(pred - gt, axis=-1)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    thr = alpha * heldout.norm[:, None]
    hit = (dist <= thr) & mask
    n = max(int(mask.sum()), 1)
    finite = mask & np.isfinite(dist)
    out = {"pck": float(hit.sum() / n),
           "mean_px": float(dist[finite].mean()) if finite.any() else float("nan"),
           "joints": int(mask.sum())}
    if flip_indices is not None:
        mirror = np.linalg.norm(pred[:, list(flip_indices)] - gt, axis=-1)
        miss = mask & ~hit
        swapped = miss & (mirror <= thr) & (np.arange(gt.shape[1]) != np.asarray(flip_indices))[None]
        out["swap_share"] = float(swapped.sum() / max(int(miss.sum()), 1))
    return out


def oks(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, area: float) -> float:
    """COCO object keypoint similarity of one prediction (K, 2) to one truth (K, 2) over ``visible`` joints."""
    if not visible.any():
        return 0.0
    d2 = ((pred - gt) ** 2).sum(-1)
    d2 = np.where(np.isfinite(d2), d2, np.inf)
    e = d2 / (2.0 * (2.0 * COCO_SIGMAS[: gt.shape[0]]) ** 2 * (area + np.spacing(1)))
    return float(np.exp(-e)[visible].mean())


@torch.no_grad()
def bottomup_maps(model: torch.nn.Module, x: torch.Tensor, flip_test: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A bottom-up model's heatmaps (N, K, H, W) and tags (N, K, H, W, L), float32 numpy, on normalised images x.

    With ``flip_test`` the mirrored images run in the same batch and the two outputs are merged
    (:func:`~pipeline.codecs.merge_flip_test`: heatmaps averaged, tags L -> 2L).
    """
    if not flip_test:
        hm, tg = model(x)
        return hm.float().cpu().numpy(), tg.float().cpu().numpy()
    hm, tg = model(torch.cat([x, x.flip(-1)]))
    hm, tg, n = hm.float().cpu().numpy(), tg.float().cpu().numpy(), len(x)
    flip = list(get_skeleton(model.config.skeleton).flip_indices)
    return merge_flip_test(hm[:n], tg[:n], hm[n:], tg[n:], flip)


@torch.no_grad()
def predict_bottomup(model: torch.nn.Module, images: np.ndarray, batch_size: int = 32,
                     flip_test: bool = False) -> list[np.ndarray]:
    """Per image, the decoded persons' keypoints (P_i, K, 3): x, y, score (``flip_test``: with the mirror)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(images), batch_size):
        x = normalize_images(images[s:s + batch_size]).to(device)
        persons = model.codec.decode(*bottomup_maps(model, x, flip_test))
        out.extend(p.keypoints for p in persons)
    model.train(was_training)
    return out


def bottomup_metrics(preds: list[np.ndarray], heldout: HeldOut, threshold: float = 0.5,
                     min_visible: int = 3) -> dict[str, float]:
    """Person recall / precision at OKS >= ``threshold`` and the joint error (see the module docstring)."""
    matched = counted = predicted = 0
    errors = []
    areas = heldout.area if heldout.area is not None else [None] * len(preds)
    for pred, gt, vis, inf, seg in zip(preds, heldout.keypoints, heldout.visible, heldout.weights > 0, areas):
        present = inf.any(-1)
        gt, vis, inf = gt[present], vis[present], inf[present]
        seg = seg[present] if seg is not None else None
        counts = vis.sum(-1) >= min_visible
        counted += int(counts.sum())
        p = pred[:, :, :2] if len(pred) else np.zeros((0, gt.shape[1], 2))
        if len(gt) == 0:
            predicted += len(p)
            continue
        sim = np.zeros((len(p), len(gt)))
        for g in range(len(gt)):
            box = gt[g][inf[g]]
            if seg is not None:
                area = float(seg[g])
            else:
                area = float(np.ptp(box[:, 0]) * np.ptp(box[:, 1])) * 0.53 if len(box) > 1 else 1.0
            for i in range(len(p)):
                sim[i, g] = oks(p[i], gt[g], vis[g], max(area, 1.0))
        rows, cols = linear_sum_assignment(-sim) if len(p) else (np.zeros(0, int), np.zeros(0, int))
        ignored_preds = 0
        for i, g in zip(rows, cols):
            if sim[i, g] >= threshold:
                if counts[g]:
                    matched += 1
                    d = np.linalg.norm(p[i] - gt[g], axis=-1)[vis[g]]
                    errors.extend(d[np.isfinite(d)].tolist())
                else:
                    ignored_preds += 1
        predicted += len(p) - ignored_preds
    return {"recall": matched / max(counted, 1), "precision": matched / max(predicted, 1),
            "joint_px": float(np.mean(errors)) if errors else float("nan"), "persons": counted}


def evaluate(model: torch.nn.Module, heldout: HeldOut, flip_test: bool = False) -> dict[str, Any]:
    """The held-out metrics for the model's head kind."""
    if model.config.head.kind == "bottomup":
        return bottomup_metrics(predict_bottomup(model, heldout.images, flip_test=flip_test), heldout)
    pred = predict_topdown(model, heldout.images, flip_test=flip_test)
    return topdown_metrics(pred, heldout, flip_indices=get_skeleton(model.config.skeleton).flip_indices)
