"""Stage ``crop``: turn the recordings into one stream per camera and write ``session.yaml``.

Reads the raw recordings named in the ``crop`` config section (mosaic videos, image-sequence
folders, single-camera files) and writes ``streams/<cam>.<ext>`` for the capture take,
``calib/streams/<recording>/<cam>.<ext>`` for calibration recordings, and ``session.yaml``
(schema ``posecap/session@1``). See the README (section "crop").
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.artifacts import write_yaml
from pipeline.config import param
from pipeline.crop.core import CameraResult, CropOptions, SourceJob, crop_source
from pipeline.errors import ConfigError
from pipeline.stage import Stage, StageContext
from pipeline.video.tiles import DetectOptions

log = logging.getLogger("posecap")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
RecordingKind = Literal["intrinsics", "extrinsics", "capture"]


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (it names files)")


@dataclass(frozen=True)
class SourceParams:
    """One recorded file or image folder and the cameras in it."""

    path: str = param("", "video file or image-sequence folder, relative to the config file")
    grid: tuple[int, int] = param((1, 1), "[rows, cols] of tiles; [1, 1] = one camera per file")
    cameras: list[str] = param([], "camera name of each tile, row-major")
    rects: list[tuple[int, int, int, int]] | None = param(
        None, "tile rectangles [[x, y, w, h], ...] row-major in mosaic pixels; null = detect them")
    margins: tuple[int, int, int, int] = param(
        (0, 0, 0, 0), "pixels trimmed from every tile [top, right, bottom, left], e.g. to drop an overlay")
    mask: list[tuple[int, int, int, int]] = param(
        [], "mosaic rectangles [[x, y, w, h], ...] blacked out (e.g. a timestamp) and ignored by detection")
    fps: float | None = param(None, "frame rate; required for image folders, overrides a video's own rate")
    time_offset_s: float = param(0.0, "start time of this source on the recording's common clock, seconds")

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("'path' is required")
        rows, cols = self.grid
        if rows < 1 or cols < 1:
            raise ValueError(f"'grid' must be [rows, cols] >= 1, got {list(self.grid)}")
        if len(self.cameras) != rows * cols:
            raise ValueError(f"{self.path}: 'cameras' lists {len(self.cameras)} names for a {rows}x{cols} "
                             "grid; name one camera per tile, row-major")
        for cam in self.cameras:
            _check_name("camera", cam)
        if self.rects is not None and len(self.rects) != rows * cols:
            raise ValueError(f"{self.path}: 'rects' lists {len(self.rects)} rectangles for a {rows}x{cols} "
                             "grid; give one per tile, row-major")
        if min(self.margins) < 0:
            raise ValueError(f"'margins' must be >= 0, got {list(self.margins)}")
        for r in self.mask:
            if r[2] <= 0 or r[3] <= 0:
                raise ValueError(f"'mask' rectangle {list(r)} must have positive width and height")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"'fps' must be > 0, got {self.fps}")


@dataclass(frozen=True)
class RecordingParams:
    """One recording (a calibration recording or the capture take) and its sources."""

    kind: RecordingKind = param("capture", "intrinsics | extrinsics | capture")
    sources: list[SourceParams] = param([], "files recorded at the same time, each with its cameras")

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for src in self.sources:
            for cam in src.cameras:
                if cam in seen:
                    raise ValueError(f"camera {cam!r} appears twice in this recording")
                seen.add(cam)


@dataclass(frozen=True)
class CropParams:
    """crop: split mosaic recordings into one stream per camera and write session.yaml."""

    recordings: dict[str, RecordingParams] = param(
        {}, "recording name -> {kind, sources}; calibration recordings and one capture take")
    stereo_pairs: list[tuple[str, str]] = param([], "pairs of camera names that form stereo rigs")
    codec: str = param("auto", "stream codec: auto (FFV1 for even tile sizes, else png; lossless), png "
                       "(lossless, any size), jpeg, or an FFmpeg FourCC such as FFV1/HFYU (even sizes only)")
    jpeg_quality: int = param(95, "quality (1-100) of the jpeg codec")
    extension: str = param("mkv", "container of the output streams: mkv or avi")
    detect_frames: int = param(24, "leading frames of each mosaic used to detect the tile rectangles "
                                   "(held in memory meanwhile)")
    dark_threshold: int = param(40, "brightest value (0-255) a separator or border pixel reaches")
    line_fraction: float = param(0.6, "fraction of a row/column that must be dark to be a separator")
    size_tolerance_px: int = param(4, "largest allowed spread of tile widths (heights), pixels")
    queue_frames: int = param(8, "frames buffered between decoder and encoders (bounds memory)")

    def __post_init__(self) -> None:
        captures = [name for name, rec in self.recordings.items() if rec.kind == "capture"]
        if len(captures) > 1:
            raise ValueError(f"recordings {captures} are all kind 'capture'; a session holds one take")
        for name in self.recordings:
            _check_name("recording", name)
        known = {cam for rec in self.recordings.values() for src in rec.sources for cam in src.cameras}
        for pair in self.stereo_pairs:
            if pair[0] == pair[1]:
                raise ValueError(f"stereo pair {list(pair)} names one camera twice")
            missing = [c for c in pair if c not in known]
            if self.recordings and missing:
                raise ValueError(f"stereo pair {list(pair)} names {missing}, not a camera of any recording")
        if self.extension.lstrip(".") == "" or "/" in self.extension:
            raise ValueError(f"'extension' {self.extension!r} is not a file extension such as 'mkv'")
        if not 0 < self.line_fraction <= 1:
            raise ValueError(f"'line_fraction' must be in (0, 1], got {self.line_fraction}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"'jpeg_quality' must be 1-100, got {self.jpeg_quality}")
        if self.detect_frames < 1 or self.queue_frames < 1:
            raise ValueError("'detect_frames' and 'queue_frames' must be >= 1")


def _source_path(ctx: StageContext, src: SourceParams) -> Path:
    return (ctx.config_dir / src.path).resolve()


def _stream_stem(ctx: StageContext, rec_name: str, kind: str, cam: str) -> Path:
    folder = ctx.path("streams") if kind == "capture" else ctx.path("calib/streams") / rec_name
    return folder / cam


def _inputs(ctx: StageContext) -> list[str]:
    p: CropParams = ctx.params
    return [str(_source_path(ctx, s)) for rec in p.recordings.values() for s in rec.sources]


def _outputs(ctx: StageContext) -> list[str]:
    return ["session.yaml", "streams", "calib/streams"]


def _jobs(ctx: StageContext) -> list[tuple[str, SourceJob]]:
    p: CropParams = ctx.params
    jobs = []
    for rec_name, rec in p.recordings.items():
        if not rec.sources:
            raise ConfigError(f"crop.recordings.{rec_name} has no 'sources'; add at least one")
        for src in rec.sources:
            jobs.append((rec_name, SourceJob(
                path=_source_path(ctx, src), label=src.path, grid=(src.grid[0], src.grid[1]),
                cameras=tuple(src.cameras),
                stems={cam: _stream_stem(ctx, rec_name, rec.kind, cam) for cam in src.cameras},
                rects=None if src.rects is None else tuple(tuple(r) for r in src.rects),  # type: ignore[misc]
                margins=tuple(src.margins),  # type: ignore[arg-type]
                mask=tuple(tuple(r) for r in src.mask),  # type: ignore[misc]
                fps=src.fps, time_offset_s=src.time_offset_s,
            )))
    return jobs


def _remove_stale(ctx: StageContext, keep: set[Path]) -> None:
    """Delete stream files a previous run left that this run did not write (renamed cameras)."""
    for folder in (ctx.path("streams"), ctx.path("calib/streams")):
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*"), reverse=True):
            if f.is_file() and f.resolve() not in keep:
                log.info("crop: removing stale stream %s", f)
                f.unlink()
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()


def _camera_entry(ctx: StageContext, r: CameraResult) -> dict[str, object]:
    return {
        "stream": r.stream.relative_to(ctx.session_dir).as_posix(),
        "source": r.source,
        "crop_rect": list(r.crop_rect),
        "image_size": list(r.image_size),
        "fps": float(r.fps),
        "frame_count": int(r.frame_count),
        "time_offset_s": float(r.time_offset_s),
        "truncated_at_frame": r.truncated_at_frame,
    }


def run(ctx: StageContext) -> None:
    p: CropParams = ctx.params
    if not p.recordings:
        raise ConfigError("crop.recordings is empty; declare the recordings to crop in the session config "
                          "(see the README, section 'crop')")
    options = CropOptions(
        codec=p.codec, jpeg_quality=p.jpeg_quality, extension=p.extension.lstrip("."),
        detect_frames=p.detect_frames, queue_frames=p.queue_frames, show_progress=ctx.show_progress,
        detect=DetectOptions(dark_threshold=p.dark_threshold, line_fraction=p.line_fraction,
                             size_tolerance_px=p.size_tolerance_px),
    )
    results: dict[str, list[CameraResult]] = {name: [] for name in p.recordings}
    with contextlib.ExitStack() as stack:  # every stream lands only if all sources succeed
        for rec_name, job in _jobs(ctx):
            results[rec_name].extend(crop_source(stack, job, options))
    _remove_stale(ctx, {r.stream.resolve() for rs in results.values() for r in rs})

    cameras: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    recordings: dict[str, object] = {}
    for rec_name, rec in p.recordings.items():
        entries = {}
        for r in results[rec_name]:
            if r.camera not in cameras:
                cameras.append(r.camera)
            if sizes.setdefault(r.camera, r.image_size) != r.image_size:
                log.warning("crop: camera %s is %dx%d in recording %s but %dx%d elsewhere; calibration "
                            "assumes one image size per camera", r.camera, *r.image_size, rec_name,
                            *sizes[r.camera])
            entries[r.camera] = _camera_entry(ctx, r)
        recordings[rec_name] = {"kind": rec.kind, "cameras": entries}
    write_yaml(ctx.path("session.yaml"), {
        "cameras": cameras,
        "stereo_pairs": [list(pair) for pair in p.stereo_pairs],
        "recordings": recordings,
    }, "session@1")


STAGE = Stage(
    name="crop",
    version="1",
    params_type=CropParams,
    inputs=_inputs,
    outputs=_outputs,
    run=run,
    summary="split mosaic recordings into one stream per camera; write session.yaml",
)
