"""Writing the triangulate stage's outputs: ``pose3d/skeletons.npz`` and ``pose3d/pose3d.yaml``.

Its inputs are read by :mod:`pipeline.triangulation.source` (block by block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import StreamedArray, write_npz_streamed, write_yaml

POSE3D_SCHEMA = "pose3d@1"


class _PeopleStats:
    """Per-person summaries of pose3d.yaml, accumulated over blocks of frames."""

    def __init__(self, n_people: int) -> None:
        self.visible = np.zeros(n_people, np.int64)
        self.first = np.full(n_people, -1, np.int64)
        self.last = np.full(n_people, -1, np.int64)
        self.err_sum = np.zeros(n_people)
        self.err_n = np.zeros(n_people, np.int64)
        self.views_sum = np.zeros(n_people)
        self.views_n = np.zeros(n_people, np.int64)

    def add_joints(self, joints: np.ndarray, frame_index: np.ndarray) -> None:
        """joints (t, P, J, 3) of frames ``frame_index`` (t,)."""
        if len(joints) == 0:
            return
        seen = np.isfinite(joints).all(-1).any(-1)  # (t, P)
        self.visible += seen.sum(0)
        any_seen = seen.any(0)
        first = frame_index[np.argmax(seen, axis=0)]
        last = frame_index[len(seen) - 1 - np.argmax(seen[::-1], axis=0)]
        self.first = np.where((self.first < 0) & any_seen, first, self.first)
        self.last = np.where(any_seen, last, self.last)

    def add_errors(self, err: np.ndarray) -> None:
        """err (t, P, J) px, NaN = none."""
        ok = np.isfinite(err)
        self.err_sum += np.where(ok, err, 0.0).sum(axis=(0, 2))
        self.err_n += ok.sum(axis=(0, 2))

    def add_views(self, views: np.ndarray) -> None:
        """views (t, P, J), 0 = not triangulated."""
        self.views_sum += views.sum(axis=(0, 2), dtype=np.float64)
        self.views_n += (views > 0).sum(axis=(0, 2))

    def people(self) -> list[dict[str, Any]]:
        """pose3d.yaml's ``people`` entries."""
        return [{
            "id": p,
            "frames_visible": int(self.visible[p]),
            "first_frame": int(self.first[p]) if self.visible[p] else None,
            "last_frame": int(self.last[p]) if self.visible[p] else None,
            "mean_reprojection_error_px": _mean(self.err_sum[p], self.err_n[p]),
            "mean_views_used": _mean(self.views_sum[p], self.views_n[p]),
        } for p in range(len(self.visible))]

    def mean_error(self) -> float | None:
        """The mean reprojection error over every person and frame, px (None when nothing was triangulated)."""
        return _mean(self.err_sum.sum(), int(self.err_n.sum()))


def _mean(total: float, n: int) -> float | None:
    """``total / n`` rounded to 3 decimals; None when ``n`` is 0."""
    return round(float(total / n), 3) if n else None


def _tapped(blocks: Iterable[np.ndarray], dtype: type, tap: Callable[[np.ndarray, int], None]) -> Iterator[np.ndarray]:
    """Each block cast to ``dtype`` after ``tap(block, first_row)`` has seen it in full precision."""
    row = 0
    for block in blocks:
        tap(block, row)
        row += len(block)
        yield block.astype(dtype)


def write_pose3d(out_dir: Path, joints: np.ndarray, reprojection_error_px: np.ndarray, views_used: np.ndarray,
                 frame_index: np.ndarray, *, skeleton: str, joint_names: list[str], cameras: list[str],
                 settings: dict[str, Any], stats: dict[str, Any], timestamp_s: np.ndarray | None = None) -> None:
    """Write ``pose3d/skeletons.npz`` and ``pose3d/pose3d.yaml`` (schema ``posecap/pose3d@1``) from whole arrays.

    ``joints`` (T, P, J, 3) metres; ``reprojection_error_px`` (T, P, J); ``views_used`` (T, P, J);
    ``frame_index`` (T,); ``timestamp_s`` (T,) seconds or None. See :func:`write_pose3d_blocks`.
    """
    write_pose3d_blocks(out_dir, [joints], [reprojection_error_px], [views_used], frame_index,
                        n_people=joints.shape[1], n_joints=joints.shape[2], skeleton=skeleton,
                        joint_names=joint_names, cameras=cameras, settings=settings, stats=stats,
                        timestamp_s=timestamp_s)


def write_pose3d_blocks(out_dir: Path, joints: Iterable[np.ndarray], reprojection_error_px: Iterable[np.ndarray],
                        views_used: Iterable[np.ndarray], frame_index: np.ndarray, *, n_people: int, n_joints: int,
                        skeleton: str, joint_names: list[str], cameras: list[str], settings: dict[str, Any],
                        stats: dict[str, Any], timestamp_s: np.ndarray | None = None) -> None:
    """Write ``pose3d/skeletons.npz`` and ``pose3d/pose3d.yaml`` from blocks of frames, one block in memory at a time.

    ``joints`` yields (t_i, P, J, 3) metres, ``reprojection_error_px`` (t_i, P, J) px and
    ``views_used`` (t_i, P, J), each covering the T frames of ``frame_index`` (T,) in order (each
    iterable is read once, in that order). ``timestamp_s`` (T,), the time of each frame in seconds
    (reference clock), is stored beside ``frame_index`` when given.

    The YAML lists, per person slot, the frames where any joint is known, the first and last such
    frame, and the mean reprojection error; plus the cameras, joint names and the settings used.
    """
    frame_index = np.asarray(frame_index, dtype=np.int64)
    T, P, J = len(frame_index), n_people, n_joints
    acc = _PeopleStats(P)
    arrays: dict[str, StreamedArray] = {
        "joints": ((T, P, J, 3), np.float32,
                   _tapped(joints, np.float32, lambda b, r: acc.add_joints(b, frame_index[r:r + len(b)]))),
        "reprojection_error_px": ((T, P, J), np.float32,
                                  _tapped(reprojection_error_px, np.float32, lambda b, r: acc.add_errors(b))),
        "views_used": ((T, P, J), np.int16, _tapped(views_used, np.int16, lambda b, r: acc.add_views(b))),
        "frame_index": ((T,), np.int64, [frame_index]),
    }
    if timestamp_s is not None:
        arrays["timestamp_s"] = ((T,), np.float64, [np.asarray(timestamp_s, dtype=np.float64)])
    write_npz_streamed(out_dir / "skeletons.npz", arrays)
    write_yaml(out_dir / "pose3d.yaml", {
        "units": "m",
        "skeleton": skeleton,
        "joint_names": list(joint_names),
        "cameras": list(cameras),
        "frames": int(T),
        "people": acc.people(),
        "mean_reprojection_error_px": acc.mean_error(),
        "stats": stats,
        "settings": settings,
    }, POSE3D_SCHEMA)
