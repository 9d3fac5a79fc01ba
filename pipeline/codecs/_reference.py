"""Plain per-instance / per-joint loops, written as the papers and their reference code describe.

Not used by the codecs: tests check the vectorized codecs against these, and
``benchmarks/bench_codecs.py`` times both. Coordinates here are heatmap (or bin) pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.codecs._refine import LOG_FLOOR, gaussian_kernel1d


def _stencil(index: int, length: int, kernel_size: int) -> tuple[int, int]:
    """Stencil centre inside [1, length - 2] and the blur radius that keeps its window inside."""
    centre = min(max(index, 1), length - 2)
    return centre, max(0, min(centre - 1, length - 2 - centre, kernel_size // 2))


def _modulate(hm: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray) -> np.ndarray:
    """DARK's modulation: zero-padded Gaussian blur, rescaled to the original maximum, then log."""
    blurred = cv2.sepFilter2D(hm, cv2.CV_64F, kernel_x, kernel_y, borderType=cv2.BORDER_CONSTANT)
    if blurred.max() > 0:
        blurred *= hm.max() / blurred.max()
    return np.log(np.maximum(blurred, LOG_FLOOR))


def decode_heatmaps_loop(
    heatmaps: np.ndarray, refine: str, blur_kernel_size: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """Per-map argmax plus refinement. heatmaps (N, K, H, W) -> xy (N, K, 2) heatmap px, vals (N, K)."""
    n, k, h, w = heatmaps.shape
    xy = np.zeros((n, k, 2))
    vals = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i, j].astype(np.float64)
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            vals[i, j] = hm[y, x]
            px, py = float(x), float(y)
            if refine == "quarter":
                if 1 <= x <= w - 2:
                    px += 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
                if 1 <= y <= h - 2:
                    py += 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
            elif refine == "dark" and w >= 3 and h >= 3:
                (cx, rx), (cy, ry) = _stencil(x, w, blur_kernel_size), _stencil(y, h, blur_kernel_size)
                f = _modulate(hm, gaussian_kernel1d(2 * rx + 1), gaussian_kernel1d(2 * ry + 1))
                grad = np.array(
                    [0.5 * (f[cy, cx + 1] - f[cy, cx - 1]), 0.5 * (f[cy + 1, cx] - f[cy - 1, cx])]
                )
                dxx = f[cy, cx + 1] - 2 * f[cy, cx] + f[cy, cx - 1]
                dyy = f[cy + 1, cx] - 2 * f[cy, cx] + f[cy - 1, cx]
                dxy = 0.25 * (f[cy + 1, cx + 1] - f[cy - 1, cx + 1] - f[cy + 1, cx - 1] + f[cy - 1, cx - 1])
                hessian = np.array([[dxx, dxy], [dxy, dyy]])
                if np.linalg.det(hessian) > 0 and dxx < 0:
                    step = -np.linalg.inv(hessian) @ grad
                    px = x + np.clip(cx - x + step[0], -1, 1)
                    py = y + np.clip(cy - y + step[1], -1, 1)
            xy[i, j] = px, py
    return xy, vals


def decode_simcc_loop(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float, use_dark: bool, blur_sizes: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row argmax (+ 1-D DARK). (N, K, Wx), (N, K, Wy) -> xy (N, K, 2) px, score (N, K)."""
    n, k = simcc_x.shape[:2]
    xy = np.zeros((n, k, 2))
    score = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            maxima = []
            for axis, row in enumerate((simcc_x[i, j], simcc_y[i, j])):
                row = row.astype(np.float64)
                p = int(np.argmax(row))
                pos = float(p)
                if use_dark and row.size >= 3:
                    c, r = _stencil(p, row.size, blur_sizes[axis])
                    blurred = np.convolve(row, gaussian_kernel1d(2 * r + 1), mode="same")
                    if blurred.max() > 0:
                        blurred *= row.max() / blurred.max()
                    f = np.log(np.maximum(blurred, LOG_FLOOR))
                    d1 = 0.5 * (f[c + 1] - f[c - 1])
                    d2 = f[c + 1] - 2 * f[c] + f[c - 1]
                    if d2 < 0:
                        pos += np.clip(c - p - d1 / d2, -1, 1)
                xy[i, j, axis] = pos / split_ratio
                maxima.append(row[p])
            score[i, j] = min(maxima)
    return xy, score


def decode_ae_loop(
    heatmaps: np.ndarray,
    tags: np.ndarray,
    joint_order: tuple[int, ...],
    max_people: int = 30,
    nms_kernel: int = 5,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """HigherHRNet's parser for one image: NMS, top-k, match_by_tag (dicts of tag lists), refine.

    As in the codec, refine keeps a filled joint only when its tag distance is under the threshold.

    Args:
        heatmaps: (K, H, W); tags: (K, H, W, L).

    Returns:
        joints (P, K, 3) [x, y, heat] in heatmap px after the quarter adjustment, heat 0 where
        missing; person tags (P, L) as the mean of member tags.
    """
    k_joints, h, w = heatmaps.shape
    dim = tags.shape[-1]
    kernel = np.ones((nms_kernel, nms_kernel), np.uint8)
    cands = []
    for j in range(k_joints):
        pooled = cv2.dilate(heatmaps[j], kernel, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
        peaks = np.where(pooled == heatmaps[j], heatmaps[j], 0).ravel()
        idx = np.argsort(-peaks, kind="stable")[:max_people]
        cands.append((peaks[idx], idx % w, idx // w, tags[j].reshape(-1, dim)[idx]))
    joint_dict: dict[int, np.ndarray] = {}
    tag_dict: dict[int, list[np.ndarray]] = {}
    for j in joint_order:
        vals, xs, ys, tg = cands[j]
        keep = vals > detection_threshold
        joints = np.stack([xs, ys, vals], axis=1)[keep].astype(np.float64)
        tg = tg[keep].astype(np.float64)
        if len(joints) == 0:
            continue
        if not joint_dict:
            for row in range(len(joints)):
                key = len(joint_dict)
                joint_dict[key] = np.zeros((k_joints, 3))
                joint_dict[key][j] = joints[row]
                tag_dict[key] = [tg[row]]
            continue
        keys = list(joint_dict)[:max_people]
        group_tags = np.array([np.mean(tag_dict[key], axis=0) for key in keys])
        diff = np.linalg.norm(tg[:, None, :] - group_tags[None, :, :], axis=2)
        cost = np.round(diff) * 100 - joints[:, 2:3]
        if len(joints) > len(keys):
            cost = np.concatenate([cost, np.full((len(joints), len(joints) - len(keys)), 1e10)], axis=1)
        for row, col in zip(*linear_sum_assignment(cost), strict=True):
            if col < len(keys) and diff[row, col] < tag_threshold:
                joint_dict[keys[col]][j] = joints[row]
                tag_dict[keys[col]].append(tg[row])
            else:
                key = len(joint_dict)
                joint_dict[key] = np.zeros((k_joints, 3))
                joint_dict[key][j] = joints[row]
                tag_dict[key] = [tg[row]]
    persons = [joint_dict[key] for key in joint_dict]
    person_tags = [np.mean(tag_dict[key], axis=0) for key in joint_dict]
    for person, mean_tag in zip(persons, person_tags, strict=True):  # refine: fill missing joints
        for j in range(k_joints):
            if person[j, 2] > 0:
                continue
            dist = np.sqrt(((tags[j] - mean_tag.astype(np.float32)) ** 2).sum(axis=2))
            y, x = np.unravel_index(np.argmax(heatmaps[j] - np.round(dist)), (h, w))
            if heatmaps[j, y, x] > 0 and dist[y, x] < tag_threshold:
                person[j] = x, y, heatmaps[j, y, x]
    for person in persons:  # adjust: quarter offset
        for j in range(k_joints):
            if person[j, 2] > 0:
                x, y = int(person[j, 0]), int(person[j, 1])
                if 1 <= x <= w - 2:
                    person[j, 0] += 0.25 * np.sign(heatmaps[j, y, x + 1] - heatmaps[j, y, x - 1])
                if 1 <= y <= h - 2:
                    person[j, 1] += 0.25 * np.sign(heatmaps[j, y + 1, x] - heatmaps[j, y - 1, x])
    return np.array(persons).reshape(-1, k_joints, 3), np.array(person_tags).reshape(-1, dim)
