"""C3D export through the ``c3d`` package (PyPI ``c3d``, pure Python; EmbodiedCognition/py-c3d).

One file holds every person: marker labels are ``P<id>:<marker>`` (Vicon's ``Subject:Marker``
convention), points are 32-bit floats (``POINT:SCALE`` < 0) in the chosen units
(``POINT:UNITS``), ``POINT:RATE`` is the frame rate and the first frame number is the stream
frame number plus one (C3D frames count from 1).

Per point, the residual word holds the reprojection error rounded to whole pixels (clipped to
1..255, since 0 means "interpolated" in C3D) and the camera byte has one bit set per view used
(at most 7); a missing joint is marked invalid (residual -1), as C3D readers expect.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_bytes
from pipeline.errors import ArtifactError


def _c3d():
    import c3d

    return c3d


def c3d_bytes(positions: np.ndarray, labels: Sequence[str], fps: float, units: str, first_frame: int,
              residual_px: np.ndarray | None = None, views_used: np.ndarray | None = None) -> bytes:
    """Encode points as a C3D file.

    Args:
        positions: (T, M, 3) in ``units``; a point with any NaN coordinate is written invalid.
        labels: M point labels (at most 30 characters each).
        fps: frames per second, > 0.
        units: ``POINT:UNITS`` text, e.g. ``"mm"``.
        first_frame: number of the first frame (>= 1).
        residual_px: (T, M) reprojection error, px, or None.
        views_used: (T, M) number of views behind each point, or None.
    """
    c3d = _c3d()
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must have shape (T, M, 3); got {positions.shape}")
    T, M, _ = positions.shape
    if T == 0 or M == 0:
        raise ValueError("a C3D file needs at least one frame and one point")
    if len(labels) != M:
        raise ValueError(f"{len(labels)} labels for {M} points")
    if any(len(lbl) > 30 for lbl in labels):
        raise ValueError("C3D point labels are limited to 30 characters")
    valid = np.isfinite(positions).all(axis=2)
    res = np.ones((T, M)) if residual_px is None else np.nan_to_num(np.asarray(residual_px, dtype=np.float64), nan=1.0)
    res = np.clip(np.rint(res), 1, 255)
    cams = np.zeros((T, M), dtype=np.int64) if views_used is None else np.clip(np.asarray(views_used), 0, 7)
    mask = (1 << cams.astype(np.int64)) - 1
    writer = c3d.Writer(point_rate=float(fps), analog_rate=0.0, point_scale=-1.0, point_units=f"{units:<4}")
    writer.set_point_labels(list(labels))
    frames = []
    empty_analog = np.zeros((0, 0), dtype=np.float32)
    for t in range(T):
        pts = np.zeros((M, 5), dtype=np.float32)
        pts[:, :3] = np.where(valid[t, :, None], positions[t], 0.0)
        pts[:, 3] = np.where(valid[t], res[t], -1.0)
        pts[:, 4] = np.where(valid[t], mask[t], 0)
        frames.append((pts, empty_analog))
    writer.add_frames(frames)
    writer.set_start_frame(max(1, int(first_frame)))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No analog data found in file."
        writer.write(buf)
    return buf.getvalue()


def write_c3d(path: str | os.PathLike, positions: np.ndarray, labels: Sequence[str], fps: float, units: str = "mm",
              first_frame: int = 1, residual_px: np.ndarray | None = None,
              views_used: np.ndarray | None = None) -> None:
    """Write a C3D file atomically (see :func:`c3d_bytes` for the arguments)."""
    write_bytes(path, c3d_bytes(positions, labels, fps, units, first_frame, residual_px, views_used))


@dataclass(frozen=True)
class C3DData:
    """A C3D file read back: ``positions`` (T, M, 3) with NaN for invalid points, ``labels``,
    ``fps``, ``units``, ``first_frame``, ``views`` (T, M) camera count (0 where invalid)."""

    positions: np.ndarray
    labels: tuple[str, ...]
    fps: float
    units: str
    first_frame: int
    views: np.ndarray


def read_c3d(path: str | os.PathLike) -> C3DData:
    """Read the points of a C3D file with the ``c3d`` package."""
    c3d = _c3d()
    p = Path(path)
    try:
        with open(p, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No analog data found in file."
            reader = c3d.Reader(fh)
            labels = tuple(str(s).strip() for s in reader.point_labels)
            units = reader.get("POINT:UNITS").string_value.strip() if reader.get("POINT:UNITS") else ""
            pts, views = [], []
            for _, points, _ in reader.read_frames(camera_sum=True):
                xyz = points[:, :3].astype(np.float64)
                bad = points[:, 3] < 0
                xyz[bad] = np.nan
                pts.append(xyz)
                views.append(np.where(bad, 0, points[:, 4]).astype(np.int64))
            fps, first = float(reader.point_rate), int(reader.first_frame)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ArtifactError(f"{p}: not a readable C3D file ({exc.__class__.__name__}: {exc})") from None
    return C3DData(np.stack(pts), labels, fps, units, first, np.stack(views))
