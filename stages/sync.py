"""Stage ``sync``: put separately recorded clocks of the capture take on one timeline.

Reads ``session.yaml`` (which cameras share a clock: those cropped from one source file; each
source's fps and configured ``time_offset_s``), ``pose2d/<cam>.npz`` and ``calib/rig.yaml``;
writes ``sync.yaml`` (schema ``posecap/sync@1``): per camera its offset on the reference clock
(seconds), clock-rate ratio, confidence and method. Offsets are estimated by correlating 2D
keypoint motion across clocks, then refined to a fraction of a frame by minimizing multi-view
reprojection error; offsets given in config win. With one clock, sync.yaml holds identity
offsets. triangulate then interpolates each camera onto the reference timeline. See
``docs/sync.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from pipeline.config import param
from pipeline.errors import ConfigError
from pipeline.geometry.rig import Rig
from pipeline.pose2d.io import read_pose2d_arrays
from pipeline.stage import Stage, StageContext, static_paths
from pipeline.sync.io import read_clocks, write_sync
from pipeline.sync.refine import CameraTrack
from pipeline.sync.solve import SyncOptions, synchronize

SESSION_YAML = "session.yaml"
POSE2D = "pose2d"
RIG = "calib/rig.yaml"
SYNC_YAML = "sync.yaml"


@dataclass(frozen=True)
class SyncParams:
    """Sync: time offsets (and rates) of the capture take's clocks, from 2D keypoint motion and the rig."""

    reference: str | None = param(None, "reference clock (source file stem, e.g. quad) or one of its cameras; "
                                        "null = the clock with the most cameras")
    offsets_s: dict[str, float] = param({}, "manual offsets by clock or camera name: reference time of its "
                                            "frame 0, s; these win over estimates")
    rates: dict[str, float] = param({}, "manual clock-rate ratios by clock or camera (reference s per own s)")
    signal: Literal["vertical", "speed"] = param("vertical", "motion signal correlated: signed vertical "
                                                             "keypoint velocity, or 2D speed (Pose2Sim)")
    score_threshold: float = param(0.3, "2D keypoints scoring below this are ignored")
    max_offset_s: float = param(10.0, "search offsets within this many seconds of the configured offset")
    min_motion: float = param(0.05, "below this motion (body sizes/s) a clock is not synchronized: fallback")
    min_correlation: float = param(0.3, "a correlation peak below this falls back to the configured offset")
    min_confidence: float = param(0.1, "warn when 1 - side lobe / peak is below this (ambiguous peak)")
    candidates: int = param(6, "highest correlation peaks checked by reprojection error")
    refine: bool = param(True, "refine the offset by minimizing multi-view reprojection error (needs the rig)")
    refine_window_frames: float = param(2.0, "refinement searches this many frames around each candidate")
    refine_max_frames: int = param(200, "reference frames used by the refinement (evenly spread)")
    estimate_rate: bool = param(False, "also estimate the clock-rate ratio (drift) by reprojection error")
    max_rate_deviation: float = param(0.01, "estimated rates stay within 1 +- this")

    def __post_init__(self) -> None:
        for key in ("max_offset_s", "refine_window_frames", "max_rate_deviation"):
            if getattr(self, key) <= 0:
                raise ValueError(f"'{key}' must be > 0, got {getattr(self, key)}")
        if self.candidates < 1 or self.refine_max_frames < 2:
            raise ValueError("'candidates' must be >= 1 and 'refine_max_frames' >= 2")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"'score_threshold' must be in [0, 1], got {self.score_threshold}")
        bad = {k: v for k, v in self.rates.items() if v <= 0}
        if bad:
            raise ValueError(f"'rates' must be > 0, got {bad}")

    def options(self) -> SyncOptions:
        fields = {f.name for f in dataclasses.fields(SyncOptions)}
        return SyncOptions(**{k: v for k, v in dataclasses.asdict(self).items() if k in fields})


def _tracks(ctx: StageContext, clocks) -> dict[str, CameraTrack]:
    pose2d = ctx.require(POSE2D)
    known = {cam: clock for clock in clocks for cam in clock.cameras}
    out = {}
    for f in sorted(pose2d.glob("*.npz")):
        if f.stem not in known:
            ctx.log.warning("sync: %s has no camera %s in session.yaml's capture take; not synchronized", f,
                            f.stem)
            continue
        arr = read_pose2d_arrays(f)
        out[f.stem] = CameraTrack(f.stem, arr["keypoints"], arr["frame_index"], known[f.stem].fps)
    if not out:
        raise ConfigError(f"{pose2d}: no keypoint files for the cameras of {ctx.path(SESSION_YAML)}; "
                          "run the pose2d stage first")
    return out


def run(ctx: StageContext) -> None:
    p: SyncParams = ctx.params
    clocks = read_clocks(ctx.require(SESSION_YAML))
    names = {c.name for c in clocks} | {cam for c in clocks for cam in c.cameras}
    for key in (*p.offsets_s, *p.rates, *([p.reference] if p.reference else [])):
        if key not in names:
            raise ConfigError(f"sync: '{key}' is neither a clock nor a camera of {ctx.path(SESSION_YAML)} "
                              f"(clocks: {', '.join(c.name for c in clocks)})")
    tracks = _tracks(ctx, clocks)
    rig = Rig.load(ctx.require(RIG)) if p.refine else None
    ref, results = synchronize(clocks, tracks, rig, p.options(), log=ctx.log)
    clock_map = {r.clock.name: r.to_mapping() for r in results}
    cameras = {}
    for r in results:
        for cam in r.clock.cameras:
            cameras[cam] = {"clock": r.clock.name, "fps": r.clock.fps, "offset_s": round(r.offset_s, 6),
                            "rate": round(r.rate, 8),
                            "confidence": None if r.confidence is None else round(r.confidence, 4),
                            "method": r.method}
    write_sync(ctx.path(SYNC_YAML), ref.name, ref.fps, clock_map, cameras, dataclasses.asdict(p))
    overrides = [r.clock.name for r in results if r.method == "config"]
    if overrides:
        ctx.log.info("sync: offsets from config (they win over estimates) for %s", ", ".join(overrides))


STAGE = Stage(
    name="sync",
    version="1",
    params_type=SyncParams,
    inputs=static_paths(SESSION_YAML, POSE2D, RIG),
    outputs=static_paths(SYNC_YAML),
    run=run,
    summary="time offsets of separately recorded cameras from 2D keypoint motion + reprojection (sync.yaml)",
)
