"""Board detection for extrinsic sweeps, where the board is often small in the image.

In a sweep through the capture volume the board is metres from most cameras: a checkerboard
square may span only 5–8 pixels, below what ``cv2.findChessboardCorners`` finds at full
resolution. :class:`SweepDetector` first runs the shared per-frame detector
(:class:`pipeline.calibration.detect.FrameDetector`); when that finds nothing it looks for
board-like regions (clusters of strong saddle points: the Hessian determinant is strongly
negative at a checkerboard corner, and its magnitude grows with contrast, so the black-and-white
board outshines floor tiles and posters), enlarges each region to ~``roi_px`` pixels (bicubic) and runs
the shared detector there. Corners found in an enlarged region are mapped back (a pixel centre
``u`` of the original lies at ``s·u + (s - 1) / 2`` in an image enlarged ``s`` times) and, for a
checkerboard, refined with ``cv2.cornerSubPix`` in the original image. The output is the shared
:class:`~pipeline.calibration.detect.Detections` artifact, in the same canonical corner order.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import multiprocessing
import os

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.calibration.board import BoardConfig
from pipeline.calibration.detect import (
    SUBPIX_CRITERIA,
    Detections,
    FrameDetector,
    board_sharpness,
    detection_key,
    iter_frames,
    open_video,
    resolve_workers,
    square_size_px,
    subpix_half_window,
)

SWEEP_DETECTOR_VERSION = "1"


def saddle_regions(gray: np.ndarray, max_regions: int = 3) -> list[tuple[int, int, int, int]]:
    """Up to ``max_regions`` boxes ``(x, y, w, h)`` around clusters of strong saddle points, strongest first."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    ixx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
    iyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3)
    ixy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3)
    saddle = cv2.GaussianBlur(np.maximum(ixy * ixy - ixx * iyy, 0.0), (0, 0), 3.0)
    top = float(saddle.max())
    if top <= 0:
        return []
    mask = (saddle > max(0.1 * top, float(np.percentile(saddle, 99)))).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((9, 9), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n <= 1:
        return []
    strength = np.bincount(labels.ravel(), weights=saddle.ravel(), minlength=n)[1:]
    order = np.argsort(-strength, kind="stable")[:max_regions] + 1
    return [tuple(int(v) for v in stats[k, :4]) for k in order]


class SweepDetector:
    """The shared detector plus a search of enlarged board-like regions (see the module docstring)."""

    def __init__(self, board: BoardConfig, roi_px: int = 400, max_scale: int = 6, max_regions: int = 3) -> None:
        self.board = board
        self.base = FrameDetector(board)
        self.roi_px, self.max_scale, self.max_regions = roi_px, max_scale, max_regions

    def __call__(self, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Find the board in ``gray`` (H, W) uint8: ``(corners (N, 2) px, NaN where unseen; sharpness)`` or None."""
        found = self.base(gray)
        if found is not None:
            return found
        H, W = gray.shape
        for x, y, w, h in saddle_regions(gray, self.max_regions):
            m = max(w, h) // 3 + 6
            x0, y0, x1, y1 = max(x - m, 0), max(y - m, 0), min(x + w + m, W), min(y + h + m, H)
            crop = gray[y0:y1, x0:x1]
            scale = int(np.clip(self.roi_px // max(crop.shape), 2, self.max_scale))
            big = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            hit = self.base(big)
            if hit is None:
                continue
            corners = (hit[0].astype(np.float64) - (scale - 1) / 2.0) / scale + [x0, y0]
            side = square_size_px(corners.reshape(self.board.rows, self.board.cols, 2))
            if self.board.type == "checkerboard":
                half = subpix_half_window(side)
                corners = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2).astype(np.float32), (half, half), (-1, -1),
                                           SUBPIX_CRITERIA).reshape(-1, 2)
            corners = np.ascontiguousarray(corners, dtype=np.float32)
            return corners, board_sharpness(gray, corners, side)
        return None


def sweep_detection_key(stream: str | os.PathLike, board: BoardConfig, stride: int) -> str:
    """Identity of a sweep detection run (the shared key plus this detector's version)."""
    base = detection_key(stream, board, stride)
    return hashlib.sha1(f"{base}|sweep{SWEEP_DETECTOR_VERSION}".encode()).hexdigest()


_WORKER: SweepDetector | None = None


def _init_worker(board: BoardConfig) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = SweepDetector(board)


def _detect_in_worker(item: tuple[int, np.ndarray]) -> tuple[int, tuple[np.ndarray, float] | None]:
    index, gray = item
    if _WORKER is None:
        raise RuntimeError("sweep detector worker not initialised")
    return index, _WORKER(gray)


def _pool_context() -> multiprocessing.context.BaseContext:
    if os.name != "posix":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def detect_sweep(path: str | os.PathLike, board: BoardConfig, stride: int = 1, workers: int = 0,
                 progress: bool = True, desc: str = "detect") -> Detections:
    """Detect the board in every ``stride``-th frame of a video with :class:`SweepDetector`.

    Same arguments and result as :func:`pipeline.calibration.detect.detect_video`; ``key`` is
    :func:`sweep_detection_key`.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    _, image_size, frame_count = open_video(path)
    workers = resolve_workers(workers)
    results: dict[int, tuple[np.ndarray, float]] = {}
    scanned = 0
    total = -(-frame_count // stride) if frame_count else None
    with tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False) as bar:
        frames = iter_frames(path, stride)
        if workers == 1:
            detector = SweepDetector(board)
            for index, gray in frames:
                found = detector(gray)
                if found is not None:
                    results[index] = found
                scanned += 1
                bar.update()
        else:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                                                        initargs=(board,)) as pool:
                pending: collections.deque = collections.deque()

                def collect() -> None:
                    nonlocal scanned
                    index, found = pending.popleft().result()
                    if found is not None:
                        results[index] = found
                    scanned += 1
                    bar.update()

                for item in frames:
                    pending.append(pool.submit(_detect_in_worker, item))
                    while len(pending) >= 3 * workers or (pending and pending[0].done()):
                        collect()
                while pending:
                    collect()
    order = sorted(results)
    n = board.n_corners
    return Detections(
        frame_index=np.asarray(order, dtype=np.int64),
        corners=np.stack([results[i][0] for i in order]).astype(np.float32) if order
        else np.zeros((0, n, 2), np.float32),
        sharpness=np.asarray([results[i][1] for i in order], dtype=np.float32),
        image_size=image_size,
        frames_scanned=scanned,
        key=sweep_detection_key(path, board, stride),
    )
