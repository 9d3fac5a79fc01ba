"""Clocks in, offsets out: the capture take's clock groups from ``session.yaml`` and ``sync.yaml``.

A *clock* is a group of cameras whose frames are exposed together: the cameras cropped from one
source file (a quad-split DVR's four cameras, a side-by-side stereo camera's two). ``sync.yaml``
(schema ``posecap/sync@1``) maps each camera onto the reference clock::

    schema: posecap/sync@1
    reference: quad                 # the clock whose time is the timeline
    reference_fps: 30.0             # the timeline's frame rate (triangulate's output frames)
    convention: "t_ref = offset_s + rate * frame / fps"
    clocks:
      stereo: {cameras: [stereo_l, stereo_r], fps: 25.0, offset_s: 0.2467, offset_frames: 7.40,
               rate: 1.0, confidence: 0.62, method: correlation+reprojection, ...}
    cameras:
      cam0: {clock: quad, fps: 30.0, offset_s: 0.0, rate: 1.0, confidence: 1.0, method: reference}

``offset_s`` is the reference time of the camera's frame 0; ``rate`` the reference seconds per
second of the camera's clock. :func:`read_sync` gives triangulate what it needs (per camera
``fps``, ``offset_s``, ``rate`` and the reference frame rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.errors import ArtifactError

SYNC_SCHEMA = "sync@1"
SESSION_SCHEMA = "session@1"
CONVENTION = "t_ref = offset_s + rate * frame / fps"


@dataclass(frozen=True)
class Clock:
    """Cameras sharing one clock in the capture take.

    Attributes:
        name: the source file's stem (made unique), e.g. ``quad``.
        source: the source file as session.yaml names it.
        cameras: camera names, in session order.
        fps: nominal frame rate of the source.
        configured_offset_s: ``time_offset_s`` from session.yaml (the crop config's value).
    """

    name: str
    source: str
    cameras: tuple[str, ...]
    fps: float
    configured_offset_s: float = 0.0


@dataclass(frozen=True)
class CameraTiming:
    """How one camera's frames map onto the reference timeline."""

    clock: str
    fps: float
    offset_s: float = 0.0
    rate: float = 1.0


@dataclass(frozen=True)
class SyncTable:
    """What triangulate reads from ``sync.yaml``."""

    reference: str
    reference_fps: float
    cameras: dict[str, CameraTiming] = field(default_factory=dict)


def _field(path: Path, where: str, value: Any, kind: type | tuple[type, ...], expected: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ArtifactError(f"{path}: field '{where}' must be {expected}, got {value!r}")
    return value


def read_clocks(session_yaml: Path) -> list[Clock]:
    """The capture take's clocks: cameras grouped by the source file they were cropped from.

    Raises:
        ArtifactError: no capture recording, or a malformed camera entry (names the field).
    """
    data = read_yaml(session_yaml, SESSION_SCHEMA)
    recordings = data.get("recordings") or {}
    if not isinstance(recordings, Mapping):
        raise ArtifactError(f"{session_yaml}: field 'recordings' must be a mapping of recording name -> recording")
    captures = [(n, r) for n, r in recordings.items() if isinstance(r, Mapping) and r.get("kind") == "capture"]
    if not captures:
        raise ArtifactError(f"{session_yaml}: no recording of kind 'capture'; sync needs the capture take's "
                            "sources (add one to the crop config and rerun crop)")
    rec_name, rec = captures[0]
    cams = rec.get("cameras") or {}
    if not isinstance(cams, Mapping) or not cams:
        raise ArtifactError(f"{session_yaml}: field 'recordings.{rec_name}.cameras' must be a non-empty mapping")
    groups: dict[str, list[tuple[str, float, float]]] = {}
    for cam, entry in cams.items():
        where = f"recordings.{rec_name}.cameras.{cam}"
        if not isinstance(entry, Mapping):
            raise ArtifactError(f"{session_yaml}: field '{where}' must be a mapping")
        source = str(entry.get("source") or entry.get("stream") or cam)
        fps = float(_field(session_yaml, f"{where}.fps", entry.get("fps"), (int, float), "a number > 0"))
        if fps <= 0:
            raise ArtifactError(f"{session_yaml}: field '{where}.fps' must be > 0, got {fps}")
        offset = float(_field(session_yaml, f"{where}.time_offset_s", entry.get("time_offset_s", 0.0),
                              (int, float), "a number (seconds)"))
        groups.setdefault(source, []).append((str(cam), fps, offset))
    clocks: list[Clock] = []
    used: set[str] = set()
    for source, members in groups.items():
        base = Path(source).stem or "clock"
        name, i = base, 2
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        fps_values = {m[1] for m in members}
        if len(fps_values) > 1:
            raise ArtifactError(f"{session_yaml}: cameras of source {source} disagree on fps ({sorted(fps_values)})")
        clocks.append(Clock(name, source, tuple(m[0] for m in members), members[0][1], members[0][2]))
    return clocks


def write_sync(path: Path, reference: str, reference_fps: float, clocks: Mapping[str, Mapping[str, Any]],
               cameras: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]) -> None:
    """Write ``sync.yaml`` (schema ``posecap/sync@1``; see the module doc)."""
    write_yaml(path, {
        "reference": reference,
        "reference_fps": float(reference_fps),
        "convention": CONVENTION,
        "clocks": {k: dict(v) for k, v in clocks.items()},
        "cameras": {k: dict(v) for k, v in cameras.items()},
        "settings": dict(settings),
    }, SYNC_SCHEMA)


def read_sync(path: Path) -> SyncTable:
    """Read ``sync.yaml`` into a :class:`SyncTable`; a malformed field is a one-line ArtifactError."""
    data = read_yaml(path, SYNC_SCHEMA)
    reference = str(_field(path, "reference", data.get("reference"), str, "the reference clock's name"))
    ref_fps = float(_field(path, "reference_fps", data.get("reference_fps"), (int, float), "a number > 0"))
    cams = _field(path, "cameras", data.get("cameras"), Mapping, "a mapping camera -> timing")
    out: dict[str, CameraTiming] = {}
    for cam, entry in cams.items():
        where = f"cameras.{cam}"
        _field(path, where, entry, Mapping, "a mapping with fps, offset_s, rate")
        fps = float(_field(path, f"{where}.fps", entry.get("fps"), (int, float), "a number > 0"))
        offset = float(_field(path, f"{where}.offset_s", entry.get("offset_s"), (int, float), "a number (s)"))
        rate = float(_field(path, f"{where}.rate", entry.get("rate", 1.0), (int, float), "a number > 0"))
        if fps <= 0 or rate <= 0:
            raise ArtifactError(f"{path}: field '{where}' needs fps > 0 and rate > 0, got fps={fps}, rate={rate}")
        out[str(cam)] = CameraTiming(str(entry.get("clock", reference)), fps, offset, rate)
    if ref_fps <= 0:
        raise ArtifactError(f"{path}: field 'reference_fps' must be > 0, got {ref_fps}")
    return SyncTable(reference, ref_fps, out)
