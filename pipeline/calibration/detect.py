"""Board corner detection over the frames of a video, in a process pool, and its artifact.

Per frame (:class:`FrameDetector`):

- checkerboard: ``cv2.findChessboardCorners`` (global threshold first, then adaptive threshold on
  a normalised image, both with the fast check), refined with ``cv2.cornerSubPix`` with a
  half-window of 0.3 x the apparent square side, then put in the canonical orientation of
  :mod:`pipeline.calibration.board` (right-handed, dark square outward from corner 0; by image
  geometry when the pattern is symmetric under a half turn).
- ChArUco: ``cv2.aruco.CharucoDetector``; partial views are kept (missing corners are NaN).

Each detection also gets a sharpness: the variance of the Laplacian inside the board's convex
hull times the apparent square side in pixels, which makes it roughly independent of the
board's distance (an edge blurred by sigma gives variance ~ contrast^2 / (sigma^3 * square)).

:func:`detect_video` reads a video with ``cv2.VideoCapture`` on a frame stride, in worker
processes that each decode and search one run of frames, with a tqdm progress bar. :func:`save_detections` /
:func:`load_detections` store the result as ``calib/detections/<cam>.npz``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.artifacts import ArraySpec, read_npz, write_npz
from pipeline.calibration.board import BoardConfig, charuco_board
from pipeline.errors import ArtifactError

DETECTOR_VERSION = "1"
# a plain global threshold first (milliseconds, and quick to give up when the pattern size is
# wrong), then adaptive thresholding on a normalised image for uneven light (slow when it fails)
CHESSBOARD_FAST_FLAGS = cv2.CALIB_CB_FAST_CHECK
CHESSBOARD_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-3)
MIN_CHARUCO_CORNERS = 6
MIN_SEGMENT = 100  # frames per worker run (and videos shorter than this are read in-process)


@dataclass(frozen=True)
class Detections:
    """Board detections of one camera.

    Attributes:
        frame_index: int64 ``(F,)`` video frame index of each frame where the board was found.
        corners: float32 ``(F, N, 2)`` distorted pixel positions, NaN where a corner was not seen.
        sharpness: float32 ``(F,)`` scale-normalised Laplacian variance inside the board.
        image_size: ``(width, height)`` px of the frames.
        frames_scanned: how many frames were examined (after the stride).
        key: identity of (stream file, board, stride, detector version), to reuse detections.
    """

    frame_index: np.ndarray
    corners: np.ndarray
    sharpness: np.ndarray
    image_size: tuple[int, int]
    frames_scanned: int
    key: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.frame_index.shape[0])


def square_size_px(grid: np.ndarray) -> float:
    """Median distance between neighbouring corners of a ``(rows, cols, 2)`` grid (NaN allowed)."""
    steps = [np.linalg.norm(np.diff(grid, axis=a), axis=-1).ravel() for a in (0, 1)]
    steps = np.concatenate(steps)
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if steps.size else float("nan")


def board_sharpness(gray: np.ndarray, corners: np.ndarray, square_px: float) -> float:
    """Variance of the Laplacian inside the convex hull of ``corners`` ``(M, 2)``, times ``square_px``."""
    pts = corners[np.isfinite(corners).all(axis=1)]
    if pts.shape[0] < 3 or not np.isfinite(square_px):
        return float("nan")
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    x0, y0 = np.maximum(np.floor(hull.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hull.max(axis=0)).astype(int) + 1, [gray.shape[1], gray.shape[0]])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return float("nan")
    patch = gray[y0:y1, x0:x1]
    lap = cv2.Laplacian(patch, cv2.CV_32F, ksize=3)
    mask = np.zeros(patch.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull - [x0, y0]).astype(np.int32), 1)
    values = lap[mask > 0]
    return float(values.var() * square_px) if values.size > 8 else float("nan")


def _sample(gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear intensity of ``gray`` at ``pts`` ``(M, 2)`` px."""
    maps = pts.reshape(-1, 1, 2).astype(np.float32)
    return (
        cv2.remap(gray, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel().astype(float)
    )


def canonical_orientation(grid: np.ndarray, gray: np.ndarray | None) -> np.ndarray:
    """Relabel a detected checkerboard ``(rows, cols, 2)`` into the board's canonical orientation.

    1. Handedness: the board's x (along a row) and y (down a column) directions, seen in the image
       (x right, y down), must turn clockwise, as for a board seen from its printed side; a
       mirrored labelling is fixed by reversing the rows.
    2. Half turn: when ``rows + cols`` is odd the two labellings differ in colour and the one with
       the dark square outward from corner 0 is kept (squares with even ``i + j`` are dark). When
       it is even (or ``gray`` is None) the one whose x direction points right in the image is
       kept; for square boards the quarter turns are chosen the same way.
    """
    rows, cols = grid.shape[:2]
    xdir = (grid[:, -1] - grid[:, 0]).mean(axis=0)
    ydir = (grid[-1, :] - grid[0, :]).mean(axis=0)
    if xdir[0] * ydir[1] - xdir[1] * ydir[0] < 0:
        grid = grid[::-1]
    if rows == cols:
        turns = [np.rot90(grid, k) for k in range(4)]
        return max(turns, key=lambda g: (g[:, -1] - g[:, 0]).mean(axis=0)[0])
    if (rows + cols) % 2 == 1 and gray is not None:
        centres = (grid[:-1, :-1] + grid[1:, :-1] + grid[:-1, 1:] + grid[1:, 1:]) / 4
        parity = (np.add.outer(np.arange(rows - 1), np.arange(cols - 1)) % 2 == 0).ravel()
        values = _sample(gray, centres.reshape(-1, 2))
        if values[parity].mean() > values[~parity].mean():
            grid = grid[::-1, ::-1]
        return grid
    if (grid[:, -1] - grid[:, 0]).mean(axis=0)[0] < 0:
        grid = grid[::-1, ::-1]
    return grid


def subpix_half_window(square_px: float) -> int:
    """cornerSubPix half-window for an apparent square side: 0.3 x side, clipped to [2, 12] px."""
    return int(np.clip(round(0.3 * square_px), 2, 12))


class FrameDetector:
    """Detects one board in grayscale frames. Build once per process (ChArUco objects are not picklable)."""

    def __init__(self, board: BoardConfig, thorough: bool = True) -> None:
        """``thorough=False`` skips the slow adaptive-threshold retry (for quick board checks)."""
        self.board = board
        self.thorough = thorough
        self.charuco = None
        if board.type == "charuco":
            self.charuco = cv2.aruco.CharucoDetector(charuco_board(board))

    def __call__(self, gray: np.ndarray, markers: tuple | None = None) -> tuple[np.ndarray, float] | None:
        """Find the board in ``gray`` (H, W) uint8.

        ``markers`` (ChArUco only) are ArUco markers already found in this frame with the board's
        dictionary, ``(corners, ids)`` as ``cv2.aruco.ArucoDetector.detectMarkers`` returns them.

        Returns:
            None when no board is found, else ``(corners, sharpness)`` with corners float32
            ``(N, 2)`` px in canonical id order, NaN for corners not seen (ChArUco only).
        """
        if self.charuco is not None:
            return self._charuco(gray, markers)
        return self._checkerboard(gray)

    def _checkerboard(self, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
        b = self.board
        found, raw = cv2.findChessboardCorners(gray, (b.cols, b.rows), flags=CHESSBOARD_FAST_FLAGS)
        if not found and self.thorough:
            found, raw = cv2.findChessboardCorners(gray, (b.cols, b.rows), flags=CHESSBOARD_FLAGS)
        if not found:
            return None
        grid = raw.reshape(b.rows, b.cols, 2)
        side = square_size_px(grid)
        half = subpix_half_window(side)
        refined = cv2.cornerSubPix(gray, raw.reshape(-1, 1, 2), (half, half), (-1, -1), SUBPIX_CRITERIA)
        grid = canonical_orientation(refined.reshape(b.rows, b.cols, 2), gray)
        corners = np.ascontiguousarray(grid.reshape(-1, 2), dtype=np.float32)
        return corners, board_sharpness(gray, corners, side)

    def _charuco(self, gray: np.ndarray, markers: tuple | None) -> tuple[np.ndarray, float] | None:
        b = self.board
        if markers is not None and markers[1] is None:
            return None
        if markers is not None:
            found, ids, _, _ = self.charuco.detectBoard(gray, markerCorners=markers[0], markerIds=markers[1])
        else:
            found, ids, _, _ = self.charuco.detectBoard(gray)
        if ids is None or len(ids) < MIN_CHARUCO_CORNERS:
            return None
        ids = ids.ravel()
        if self.charuco.getBoard().checkCharucoCornersCollinear(ids):
            return None
        corners = np.full((b.n_corners, 2), np.nan, np.float32)
        corners[ids] = found.reshape(-1, 2)
        side = square_size_px(corners.reshape(b.rows, b.cols, 2))
        return corners, board_sharpness(gray, corners, side)


_WORKER: FrameDetector | None = None


def _init_worker(board: BoardConfig, threads: int | None = 1) -> None:
    """Build this process's detector; worker processes use one OpenCV thread each."""
    global _WORKER
    if threads is not None:
        cv2.setNumThreads(threads)
    _WORKER = FrameDetector(board)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A decoded frame (H, W) or (H, W, 3|4) BGR as (H, W) uint8."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[..., 0]
    code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(frame, code)


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, tuple[int, int], int]:
    """Open a video; returns the capture, its ``(width, height)`` and its (approximate) frame count."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ArtifactError(f"{path}: cannot open video; check that the file exists and is a readable stream")
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return cap, size, max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)


def iter_frames(path: str | os.PathLike, stride: int = 1, start: int = 0, stop: int | None = None):
    """Yield ``(frame_index, gray)`` for frames ``start <= index < stop`` with ``index % stride == 0``."""
    cap, _, _ = open_video(path)
    try:
        if start > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        index = start
        while stop is None or index < stop:
            if index % stride:
                if not cap.grab():
                    return
            else:
                ok, frame = cap.read()
                if not ok:
                    return
                yield index, to_gray(frame)
            index += 1
    finally:
        cap.release()


def detection_key(stream: str | os.PathLike, board: BoardConfig, stride: int) -> str:
    """Identity of a detection run: stream file (path, size, mtime), board, stride, detector version."""
    st = Path(stream).stat()
    spec = {
        "stream": Path(stream).name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "board": board.as_yaml(),
        "stride": stride,
        "detector": DETECTOR_VERSION,
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def resolve_workers(workers: int) -> int:
    """``workers <= 0`` means one per CPU core."""
    return workers if workers > 0 else max(os.cpu_count() or 1, 1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Worker processes start from a fork server that has this module (and OpenCV) preloaded:
    quick to start, and safe when the caller has threads (fork alone is not)."""
    if os.name != "posix":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def segments(frame_count: int, stride: int, workers: int) -> list[tuple[int, int | None]]:
    """Split frames ``[0, frame_count)`` into about ``4 * workers`` runs of at least ``MIN_SEGMENT``
    frames, each starting on a multiple of ``stride``; the last run is open-ended (``None``), so
    frames beyond an under-reported frame count are still read."""
    if frame_count <= 0 or workers <= 1:
        return [(0, None)]
    length = max(MIN_SEGMENT, -(-frame_count // (4 * workers)))
    length = -(-length // stride) * stride
    starts = list(range(0, frame_count, length))
    return [(a, b) for a, b in zip(starts, starts[1:])] + [(starts[-1], None)]


def _detect_segment(job: tuple[str, int, int, int | None]) -> tuple[dict[int, tuple[np.ndarray, float]], int]:
    path, stride, start, stop = job
    assert _WORKER is not None, "worker not initialised"
    found, scanned = {}, 0
    for index, gray in iter_frames(path, stride, start, stop):
        result = _WORKER(gray)
        scanned += 1
        if result is not None:
            found[index] = result
    return found, scanned


def detect_video(
    path: str | os.PathLike,
    board: BoardConfig,
    stride: int = 1,
    workers: int = 0,
    progress: bool = True,
    desc: str = "detect",
) -> Detections:
    """Detect the board in every ``stride``-th frame of the video at ``path``.

    With several workers the video is cut into runs of frames (:func:`segments`); each worker
    process opens the video itself, seeks to its run and decodes and searches it, so decoding is
    spread over the cores too (decoding a frame costs about as much as finding the board in it).
    This needs frame-exact seeking, which the intra-only streams crop writes (FFV1, PNG in MKV)
    have; a video whose frame count is unknown is read in one run.

    Args:
        path: a video readable by ``cv2.VideoCapture``.
        board: the board to look for.
        stride: examine frames 0, stride, 2 * stride, ...
        workers: worker processes (0 = one per core; 1 = run in this process).
        progress: draw a tqdm bar on stderr (advanced as runs finish).
        desc: label of the progress bar (the camera name).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    _, image_size, frame_count = open_video(path)
    total = -(-frame_count // stride) if frame_count else None
    workers = resolve_workers(workers) if total is None or total >= MIN_SEGMENT else 1
    jobs = [(str(path), stride, a, b) for a, b in segments(frame_count, stride, workers)]
    results: dict[int, tuple[np.ndarray, float]] = {}
    scanned = 0
    with tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False) as bar:
        if len(jobs) == 1:
            _init_worker(board, threads=None)
            for index, gray in iter_frames(path, stride):
                found = _WORKER(gray)
                if found is not None:
                    results[index] = found
                scanned += 1
                bar.update()
        else:
            with concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(board,)
            ) as pool:
                for future in concurrent.futures.as_completed(
                    [pool.submit(_detect_segment, j) for j in jobs]
                ):
                    found, n = future.result()
                    results.update(found)
                    scanned += n
                    bar.update(n)
    order = sorted(results)
    n = board.n_corners
    return Detections(
        frame_index=np.asarray(order, dtype=np.int64),
        corners=np.stack([results[i][0] for i in order]).astype(np.float32)
        if order
        else np.zeros((0, n, 2), np.float32),
        sharpness=np.asarray([results[i][1] for i in order], dtype=np.float32),
        image_size=image_size,
        frames_scanned=scanned,
        key=detection_key(path, board, stride),
    )


def save_detections(path: str | os.PathLike, det: Detections) -> None:
    """Write ``calib/detections/<cam>.npz``.

    Arrays: frame_index, corners, sharpness, image_size, frames_scanned, key (see :class:`Detections`).
    """
    write_npz(
        path,
        frame_index=det.frame_index,
        corners=det.corners,
        sharpness=det.sharpness,
        image_size=np.asarray(det.image_size, np.int64),
        frames_scanned=np.asarray(det.frames_scanned),
        key=np.asarray(det.key),
    )


DETECTION_SPECS = {
    "frame_index": ArraySpec(("F",), "iu"),
    "corners": ArraySpec(("F", None, 2), "f"),
    "sharpness": ArraySpec(("F",), "f"),
    "image_size": ArraySpec((2,), "iu"),
    "frames_scanned": ArraySpec((), "iu"),
}


def load_detections(path: str | os.PathLike, n_corners: int | None = None) -> Detections:
    """Read a detections artifact; with ``n_corners``, check it matches the board."""
    arrays = read_npz(path, DETECTION_SPECS)
    corners = arrays["corners"].astype(np.float32)
    if n_corners is not None and corners.shape[1] != n_corners:
        raise ArtifactError(
            f"{path}: array 'corners' has {corners.shape[1]} corners per frame but the board has "
            f"{n_corners}; delete the file to re-detect"
        )
    key = arrays.get("key")
    return Detections(
        frame_index=arrays["frame_index"].astype(np.int64),
        corners=corners,
        sharpness=arrays["sharpness"].astype(np.float32),
        image_size=(int(arrays["image_size"][0]), int(arrays["image_size"][1])),
        frames_scanned=int(arrays["frames_scanned"]),
        key=str(key) if key is not None else "",
    )
