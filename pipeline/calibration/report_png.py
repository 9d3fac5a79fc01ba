"""A picture per camera: where the board was seen, which views were used, and the residuals.

Drawn with OpenCV on a canvas the size of the image (scaled down to at most 1280 px wide), under
a header with the figures:

- coverage-grid cells shaded by how many used corners fall in them (the cells of the coverage
  score in :mod:`pipeline.calibration.select`), empty cells outlined in red;
- every detected corner as a grey dot, corners of the views used in the solve as green dots;
- each used corner's residual (detected minus reprojected) as an orange line from the corner,
  magnified so that the 95th-percentile residual draws 15 px long (the gain is printed).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.calibration.select import cell_ids, grid_shape
from pipeline.errors import ArtifactError

MAX_WIDTH = 1280
HEADER_PX = 64


def draw_report(
    image_size: tuple[int, int],
    detected: np.ndarray,
    used: list[np.ndarray],
    residuals: list[np.ndarray],
    lines: list[str],
) -> np.ndarray:
    """Draw the report image.

    Args:
        image_size: ``(width, height)`` px of the camera.
        detected: float ``(..., 2)`` px, every detected corner (NaN ignored).
        used: per used view, float ``(M_v, 2)`` px detected corners.
        residuals: per used view, float ``(M_v, 2)`` px, detected minus reprojected.
        lines: header text lines (at most 3 are drawn).

    Returns:
        uint8 BGR ``(H', W', 3)``.
    """
    w, h = image_size
    scale = min(1.0, MAX_WIDTH / w)
    cw, ch = int(round(w * scale)), int(round(h * scale))
    img = np.full((ch + HEADER_PX, cw, 3), 32, np.uint8)
    view = img[HEADER_PX:]
    view[:] = 48

    used_pts = np.concatenate(used, axis=0) if used else np.zeros((0, 2))
    gc, gr = grid_shape(image_size)
    ids = cell_ids(used_pts, image_size)
    counts = np.bincount(ids[ids >= 0], minlength=gc * gr).reshape(gr, gc)
    top = max(int(counts.max()), 1)
    for r in range(gr):
        for c in range(gc):
            x0, x1 = int(c * cw / gc), int((c + 1) * cw / gc) - 1
            y0, y1 = int(r * ch / gr), int((r + 1) * ch / gr) - 1
            if counts[r, c]:
                level = 60 + int(100 * np.sqrt(counts[r, c] / top))
                cv2.rectangle(view, (x0, y0), (x1, y1), (level, int(level * 0.7), 40), -1)
                cv2.rectangle(view, (x0, y0), (x1, y1), (90, 90, 90), 1)
            else:
                cv2.rectangle(view, (x0, y0), (x1, y1), (40, 40, 170), 1)

    def to_px(pts: np.ndarray) -> np.ndarray:
        return np.round(pts * scale).astype(np.int32)

    all_pts = np.asarray(detected, float).reshape(-1, 2)
    for x, y in to_px(all_pts[np.isfinite(all_pts).all(axis=1)]):
        cv2.circle(view, (int(x), int(y)), 1, (150, 150, 150), -1, cv2.LINE_AA)
    res = np.concatenate(residuals, axis=0) if residuals else np.zeros((0, 2))
    mags = np.linalg.norm(res, axis=1)
    gain = 15.0 / max(float(np.percentile(mags, 95)) * scale, 1e-3) if mags.size else 1.0
    for p, d in zip(used_pts, res):
        a = to_px(p)
        b = np.round(p * scale + d * scale * gain).astype(np.int32)
        cv2.line(view, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (40, 140, 255), 1, cv2.LINE_AA)
    for x, y in to_px(used_pts):
        cv2.circle(view, (int(x), int(y)), 2, (80, 220, 80), -1, cv2.LINE_AA)

    text = [*lines[:2], f"grey: detected  green: used  orange: residual x{gain:.0f}  red cell: no corner"]
    for k, line in enumerate(text[:3]):
        cv2.putText(
            img, line, (8, 18 + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA
        )
    return img


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` as a PNG atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise ArtifactError(f"{path}: OpenCV could not write the PNG")
