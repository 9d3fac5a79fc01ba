"""JSON export: the skeletons organised per frame, and per person.

``frames.json``::

    {"format": "posecap/pose3d-frames@1", "units": "mm", "fps": 30.0, "joint_names": [...],
     "frames": [{"frame": 12, "time_s": 0.4,
                 "people": [{"id": 0, "joints": [[x, y, z] | null, ...],
                             "reprojection_error_px": [e | null, ...], "views_used": [n, ...]}]}]}

A frame lists only the people with at least one known joint; a joint unknown in that frame is
``null``. ``person<id>.json`` holds one person's time series::

    {"format": "posecap/pose3d-person@1", "id": 0, "units": "mm", "fps": 30.0, "joint_names": [...],
     "frames": [12, 13, ...], "time_s": [...],
     "joints": {"nose": [[x, y, z] | null, ...], ...},
     "reprojection_error_px": {"nose": [...], ...}, "views_used": {"nose": [...], ...}}

Numbers are rounded to ``decimals`` places (1e-3 mm at the default of 3 for mm).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from pipeline.artifacts import atomic_path


def _vec_list(points: np.ndarray, decimals: int) -> list:
    """(N, 3) -> N lists ``[x, y, z]``, ``None`` for a point holding any NaN."""
    known = np.isfinite(points).all(axis=-1)
    rounded = np.round(np.nan_to_num(points), decimals).tolist()
    return [r if k else None for r, k in zip(rounded, known.tolist())]


def _scalar_list(values: np.ndarray, decimals: int) -> list:
    values = np.asarray(values, dtype=np.float64)
    return [round(float(v), decimals) if np.isfinite(v) else None for v in values.reshape(-1)]


def write_frames_json(path: str | os.PathLike, points: np.ndarray, error_px: np.ndarray, views: np.ndarray,
                      frame_index: np.ndarray, joint_names: Sequence[str], fps: float, units: str,
                      decimals: int = 3) -> None:
    """Write ``frames.json``, one frame at a time (memory stays at one frame's worth of text).

    Args:
        points: (T, P, J, 3) in ``units``, NaN unknown.
        error_px: (T, P, J) px.
        views: (T, P, J) int.
        frame_index: (T,) stream frame numbers.
    """
    T, P, J, _ = points.shape
    head = {"format": "posecap/pose3d-frames@1", "units": units, "fps": fps, "joint_names": list(joint_names)}
    known = np.isfinite(points).all(axis=-1)  # (T, P, J)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(head)[:-1] + ', "frames": [\n')
        for t in range(T):
            people = []
            for p in np.flatnonzero(known[t].any(axis=1)):
                people.append({
                    "id": int(p),
                    "joints": _vec_list(points[t, p], decimals),
                    "reprojection_error_px": _scalar_list(np.where(known[t, p], error_px[t, p], np.nan), 3),
                    "views_used": [int(v) if k else 0 for v, k in zip(views[t, p], known[t, p])],
                })
            entry = {"frame": int(frame_index[t]), "time_s": round(float(frame_index[t]) / fps, 6), "people": people}
            fh.write(("  " if t == 0 else ", ") + json.dumps(entry, allow_nan=False) + "\n")
        fh.write("]}\n")


def write_person_json(path: str | os.PathLike, person_id: int, points: np.ndarray, error_px: np.ndarray,
                      views: np.ndarray, frame_index: np.ndarray, joint_names: Sequence[str], fps: float,
                      units: str, decimals: int = 3) -> None:
    """Write ``person<id>.json``: one person's (T, J, 3) trajectory in ``units``."""
    known = np.isfinite(points).all(axis=-1)
    doc = {
        "format": "posecap/pose3d-person@1",
        "id": int(person_id),
        "units": units,
        "fps": fps,
        "joint_names": list(joint_names),
        "frames": [int(f) for f in frame_index],
        "time_s": [round(float(f) / fps, 6) for f in frame_index],
        "joints": {n: _vec_list(points[:, j], decimals) for j, n in enumerate(joint_names)},
        "reprojection_error_px": {n: _scalar_list(np.where(known[:, j], error_px[:, j], np.nan), 3)
                                  for j, n in enumerate(joint_names)},
        "views_used": {n: [int(v) if k else 0 for v, k in zip(views[:, j], known[:, j])]
                       for j, n in enumerate(joint_names)},
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
