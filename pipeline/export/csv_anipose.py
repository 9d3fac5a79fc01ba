"""CSV in anipose's ``pose-3d/<video>.csv`` layout, one file per person.

anipose (``anipose/triangulate.py``) writes one row per frame and these columns, in this order::

    <joint>_x, <joint>_y, <joint>_z, <joint>_error, <joint>_ncams, <joint>_score   (per joint)
    M_00, M_01, M_02, M_10, ..., M_22                                                (3x3 rotation)
    center_0, center_1, center_2
    fnum

with ``pandas.DataFrame.to_csv(index=False)``: a header row, NaN as an empty field. anipose's
points are ``points_world @ M.T - center`` (its optional axis alignment); the same holds here,
with ``M`` and ``center`` those of the frame posecap exported in (identity and zero for the
world frame), so scripts that undo the alignment keep working.

Column meanings as in anipose: ``_error`` the mean reprojection error in pixels, ``_ncams`` the
number of views used (empty where the joint is unknown), ``_score`` a confidence in [0, 1].
posecap keeps only 2D keypoints above triangulate's score threshold and stores no 3D score, so
``_score`` is 1 for a triangulated joint and empty for an unknown one. ``fnum`` is the stream
frame number.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_bytes
from pipeline.errors import ArtifactError

JOINT_FIELDS = ("x", "y", "z", "error", "ncams", "score")


def anipose_columns(joint_names: Sequence[str]) -> list[str]:
    """The column names of anipose's 3D CSV for ``joint_names``, in order."""
    cols = [f"{j}_{f}" for j in joint_names for f in JOINT_FIELDS]
    cols += [f"M_{i}{k}" for i in range(3) for k in range(3)]
    cols += [f"center_{i}" for i in range(3)]
    cols.append("fnum")
    return cols


def _fmt(values: np.ndarray) -> np.ndarray:
    """Floats as shortest round-trip text (as pandas writes them); NaN -> empty field."""
    values = np.asarray(values, dtype=np.float64)
    out = np.array([repr(float(v)) for v in values.ravel()], dtype=object).reshape(values.shape)
    out[~np.isfinite(values)] = ""
    return out


def anipose_csv_text(points: np.ndarray, error_px: np.ndarray, ncams: np.ndarray, joint_names: Sequence[str],
                     frame_numbers: np.ndarray, M: np.ndarray | None = None,
                     center: np.ndarray | None = None) -> str:
    """Render one person's trajectory as anipose's CSV.

    Args:
        points: (T, J, 3) positions, already ``points_world @ M.T - center``, in the output units.
        error_px: (T, J) mean reprojection error, px (NaN unknown).
        ncams: (T, J) views used (0 = unknown).
        joint_names: J names.
        frame_numbers: (T,) int frame numbers (the ``fnum`` column).
        M: (3, 3) rotation applied to the world points (identity by default).
        center: (3,) offset subtracted after the rotation (zero by default).
    """
    points = np.asarray(points, dtype=np.float64)
    T, J, _ = points.shape
    if len(joint_names) != J:
        raise ValueError(f"{len(joint_names)} joint names for {J} joints")
    M = np.eye(3) if M is None else np.asarray(M, dtype=np.float64)
    center = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
    known = np.isfinite(points).all(axis=2)
    err = np.where(known, error_px, np.nan)
    cams = np.where(known, np.asarray(ncams, dtype=np.float64), np.nan)
    score = np.where(known, 1.0, np.nan)
    per_joint = np.concatenate([points, err[..., None], cams[..., None], score[..., None]], axis=2)  # (T, J, 6)
    body = _fmt(per_joint.reshape(T, J * 6))
    tail = _fmt(np.concatenate([M.reshape(-1), center]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(anipose_columns(joint_names))
    for t in range(T):
        w.writerow([*body[t], *tail, int(frame_numbers[t])])
    return buf.getvalue()


def write_anipose_csv(path: str | os.PathLike, points: np.ndarray, error_px: np.ndarray, ncams: np.ndarray,
                      joint_names: Sequence[str], frame_numbers: np.ndarray, M: np.ndarray | None = None,
                      center: np.ndarray | None = None) -> None:
    """Write one person's anipose CSV atomically (see :func:`anipose_csv_text`)."""
    write_bytes(path, anipose_csv_text(points, error_px, ncams, joint_names, frame_numbers, M, center)
                .encode("utf-8"))


@dataclass(frozen=True)
class AniposeCsv:
    """An anipose 3D CSV read back: ``columns``, ``joint_names``, ``points`` (T, J, 3),
    ``error`` / ``ncams`` / ``score`` (T, J), ``M`` (3, 3), ``center`` (3,), ``fnum`` (T,)."""

    columns: tuple[str, ...]
    joint_names: tuple[str, ...]
    points: np.ndarray
    error: np.ndarray
    ncams: np.ndarray
    score: np.ndarray
    M: np.ndarray
    center: np.ndarray
    fnum: np.ndarray


def read_anipose_csv(path: str | os.PathLike) -> AniposeCsv:
    """Read an anipose-layout 3D CSV (empty fields are NaN)."""
    p = Path(path)
    with open(p, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ArtifactError(f"{p}: empty CSV")
    cols = tuple(rows[0])
    joints = tuple(c[:-2] for c in cols if c.endswith("_x") and f"{c[:-2]}_score" in cols)
    if cols != tuple(anipose_columns(joints)):
        raise ArtifactError(f"{p}: columns do not follow anipose's layout")
    data = np.array([[float(v) if v != "" else np.nan for v in r] for r in rows[1:]], dtype=np.float64)
    data = data.reshape(len(rows) - 1, len(cols))
    J = len(joints)
    per = data[:, : J * 6].reshape(-1, J, 6)
    tail = data[:, J * 6:]
    return AniposeCsv(cols, joints, per[..., :3], per[..., 3], per[..., 4], per[..., 5],
                      tail[0, :9].reshape(3, 3) if len(tail) else np.eye(3),
                      tail[0, 9:12] if len(tail) else np.zeros(3), tail[:, 12].astype(np.int64))
