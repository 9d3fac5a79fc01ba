"""TRC marker files for OpenSim (``.trc``, tab-separated, PathFileType 4).

Layout (as OpenSim's ``TRCFileAdapter`` reads and writes it)::

    PathFileType  4  (X/Y/Z)  person0.trc
    DataRate  CameraRate  NumFrames  NumMarkers  Units  OrigDataRate  OrigDataStartFrame  OrigNumFrames
    30.00     30.00       120        17          mm     30.00         1                   120
    Frame#  Time  Nose  <tab>  <tab>  LEye  ...
                  X1    Y1     Z1     X2    ...
    <blank line>
    1       0.000000  12.345  ...

A missing marker leaves its three fields empty, which OpenSim reads as NaN (and inverse
kinematics then ignores the marker in that frame). ``Frame#`` is the stream frame number plus
one (TRC frames count from 1); ``Time`` is the stream frame number divided by the frame rate, so
times line up with the videos.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_bytes
from pipeline.errors import ArtifactError


def format_trc(positions: np.ndarray, marker_names: Sequence[str], frame_index: np.ndarray, fps: float,
               units: str, file_name: str) -> str:
    """Render a TRC file as text.

    Args:
        positions: (T, M, 3) marker positions in ``units``; NaN = missing.
        marker_names: M names (no tabs or newlines).
        frame_index: (T,) int stream frame numbers (0-based).
        fps: frames per second, > 0.
        units: ``"mm"`` or ``"m"`` (OpenSim also accepts ``"cm"``).
        file_name: the name written in the first line.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must have shape (T, M, 3); got {positions.shape}")
    T, M, _ = positions.shape
    if len(marker_names) != M:
        raise ValueError(f"{len(marker_names)} marker names for {M} markers")
    if any(("\t" in n or "\n" in n or not n) for n in marker_names):
        raise ValueError("marker names must be non-empty and hold no tabs or newlines")
    frame_index = np.asarray(frame_index).reshape(-1)
    if frame_index.shape[0] != T:
        raise ValueError(f"frame_index has {frame_index.shape[0]} entries for {T} frames")
    if not fps > 0:
        raise ValueError(f"fps must be > 0; got {fps}")
    out = io.StringIO()
    start = int(frame_index[0]) + 1 if T else 1
    out.write(f"PathFileType\t4\t(X/Y/Z)\t{file_name}\n")
    out.write("DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n")
    out.write(f"{fps:.6g}\t{fps:.6g}\t{T}\t{M}\t{units}\t{fps:.6g}\t{start}\t{T}\n")
    out.write("Frame#\tTime\t" + "\t".join(f"{n}\t\t" for n in marker_names).rstrip("\t") + "\n")
    out.write("\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, M + 1)) + "\n")
    out.write("\n")
    text = np.char.mod("%.6f", np.nan_to_num(positions.reshape(T, M * 3)))
    text[~np.isfinite(positions.reshape(T, M * 3))] = ""
    for t in range(T):
        out.write(f"{int(frame_index[t]) + 1}\t{frame_index[t] / fps:.6f}\t" + "\t".join(text[t]) + "\n")
    return out.getvalue()


def write_trc(path: str | os.PathLike, positions: np.ndarray, marker_names: Sequence[str],
              frame_index: np.ndarray, fps: float, units: str = "mm") -> None:
    """Write a TRC file atomically (see :func:`format_trc` for the arguments)."""
    p = Path(path)
    write_bytes(p, format_trc(positions, marker_names, frame_index, fps, units, p.name).encode("utf-8"))


@dataclass(frozen=True)
class TrcData:
    """A TRC file read back.

    Attributes:
        positions: (T, M, 3) float64 in ``units``, NaN where a field was empty.
        marker_names: M names.
        frame_numbers: (T,) int, as in the ``Frame#`` column.
        times: (T,) float seconds.
        fps: the ``DataRate``.
        units: the ``Units`` field.
    """

    positions: np.ndarray
    marker_names: tuple[str, ...]
    frame_numbers: np.ndarray
    times: np.ndarray
    fps: float
    units: str


def read_trc(path: str | os.PathLike) -> TrcData:
    """Read a TRC file (PathFileType 4) written by posecap, OpenSim or a motion-capture system."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{p}: cannot read ({exc.__class__.__name__})") from None
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise ArtifactError(f"{p}: not a TRC file (first line should start with 'PathFileType')")
    keys = lines[1].split("\t")
    values = lines[2].split("\t")
    header = dict(zip(keys, values))
    try:
        n_markers = int(header["NumMarkers"])
        fps = float(header["DataRate"])
        units = header["Units"].strip()
    except (KeyError, ValueError):
        raise ArtifactError(f"{p}: TRC header lines 2-3 lack NumMarkers / DataRate / Units") from None
    names = [n for n in lines[3].split("\t")[2:] if n.strip()]
    if len(names) != n_markers:
        raise ArtifactError(f"{p}: {len(names)} marker names in line 4 but NumMarkers is {n_markers}")
    rows = [ln for ln in lines[5:] if ln.strip()]
    T = len(rows)
    pos = np.full((T, n_markers * 3), np.nan)
    frames = np.zeros(T, dtype=np.int64)
    times = np.zeros(T)
    for t, row in enumerate(rows):
        fields = row.split("\t")
        frames[t] = int(float(fields[0]))
        times[t] = float(fields[1])
        vals = fields[2:2 + n_markers * 3]
        for i, v in enumerate(vals):
            v = v.strip()
            if v and v.lower() != "nan":
                pos[t, i] = float(v)
    return TrcData(pos.reshape(T, n_markers, 3), tuple(names), frames, times, fps, units)
