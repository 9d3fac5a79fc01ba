"""Stage calibrate_intrinsics: lens intrinsics (K, distortion) of every camera from a board sweep.

Reads ``session.yaml`` and the streams of one recording (``calib/streams/<recording>/<cam>.*``),
and the ``board`` config section. Writes, per camera, ``calib/detections/<cam>.npz`` (the board
corners found in each frame, reused on the next run when the stream, board and stride are the
same), ``calib/intrinsics/<cam>.yaml`` (``posecap/intrinsics@1``) and ``calib/intrinsics/<cam>.png``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.artifacts import read_yaml
from pipeline.calibration.blas_threads import single_thread_opencv
from pipeline.calibration.camera_job import Settings, calibrate_camera
from pipeline.config import param
from pipeline.errors import ArtifactError, ConfigError, PosecapError
from pipeline.stage import Stage, StageContext

_LIB = Settings()  # the library's defaults: the params below take theirs from it, so they live in one place


@dataclass(frozen=True)
class CalibrateIntrinsicsParams:
    """calibrate_intrinsics: per-camera lens calibration from a board sweep."""

    recording: str = param("intrinsics", "recording in session.yaml whose streams show the board sweeps")
    cameras: list[str] = param([], "cameras to calibrate; empty = every camera of the recording")
    stride: int = param(_LIB.stride, "examine every n-th frame of each stream; 0 = auto (scan_frames)")
    scan_frames: int = param(
        _LIB.scan_frames, "with stride 0: the smallest stride that examines at most this many frames per stream"
    )
    max_frames: int = param(_LIB.max_frames, "most frames given to the solver, chosen to cover the image and tilts")
    model: Literal["pinhole5", "rational8", "fisheye"] = param(
        _LIB.model, "distortion model: pinhole5 (k1 k2 p1 p2 k3) | rational8 (+ k4 k5 k6) | fisheye (k1..k4)"
    )
    blur_min_relative: float = param(
        _LIB.blur_min_relative,
        "reject a frame whose sharpness inside the board is below this fraction of the camera's median",
    )
    outlier_k: float = param(
        _LIB.outlier_k, "a view is an outlier above median + k * robust sigma of the per-view errors"
    )
    outlier_floor_px: float = param(
        _LIB.outlier_floor_px, "views with an RMS error below this (px) are never outliers"
    )
    min_frames: int = param(_LIB.min_frames, "fewest frames with the board a camera needs; fewer is an error")
    rms_warn_px: float = param(_LIB.rms_warn_px, "warn when a camera's RMS reprojection error (px) is above this")
    coverage_warn: float = param(
        _LIB.coverage_warn, "warn when the used corners cover less than this fraction of the image grid"
    )
    workers: int = param(_LIB.workers, "detection processes; 0 = one per CPU core, 1 = no pool")
    diagnose_samples: int = param(
        _LIB.diagnose_samples, "frames sampled to find the right board definition when none is found"
    )
    write_png: bool = param(True, "also write calib/intrinsics/<cam>.png (coverage and residuals)")

    def __post_init__(self) -> None:
        for name in ("scan_frames", "max_frames", "min_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stride < 0:
            raise ValueError(f"stride must be >= 0 (0 = auto), got {self.stride}")
        if self.max_frames < self.min_frames:
            raise ValueError(f"max_frames ({self.max_frames}) must be >= min_frames ({self.min_frames})")

    def settings(self) -> Settings:
        """The library's settings: every field of :class:`Settings` has a same-named param here."""
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)})


def recording_cameras(
    session: dict[str, Any], path: Path, recording: str, wanted: list[str]
) -> dict[str, tuple[str, tuple[int, int]]]:
    """camera -> (stream path relative to the session, (width, height)) from a parsed session.yaml."""
    recordings = session.get("recordings")
    if not isinstance(recordings, dict) or recording not in recordings:
        found = ", ".join(recordings) if isinstance(recordings, dict) else "none"
        raise ConfigError(
            f"{path}: no recording '{recording}' (found: {found}); set calibrate_intrinsics.recording"
        )
    cameras = (recordings[recording] or {}).get("cameras")
    if not isinstance(cameras, dict) or not cameras:
        raise ArtifactError(f"{path}: recordings.{recording}.cameras is missing or empty; re-run crop")
    unknown = [c for c in wanted if c not in cameras]
    if unknown:
        raise ConfigError(
            f"calibrate_intrinsics.cameras names {', '.join(unknown)}, not in recording "
            f"'{recording}' of {path} (cameras: {', '.join(cameras)})"
        )
    out = {}
    for cam in wanted or list(cameras):
        entry = cameras[cam]
        where = f"{path}: recordings.{recording}.cameras.{cam}"
        if not isinstance(entry, dict) or not isinstance(entry.get("stream"), str):
            raise ArtifactError(
                f"{where}.stream is missing; expected the stream path relative to the session"
            )
        size = entry.get("image_size")
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
        ):
            raise ArtifactError(f"{where}.image_size is {size!r}; expected [width, height] in pixels")
        out[cam] = (entry["stream"], (size[0], size[1]))
    return out


def _inputs(ctx: StageContext) -> list[str]:
    return ["session.yaml", f"calib/streams/{ctx.params.recording}"]


def _outputs(ctx: StageContext) -> list[str]:
    return ["calib/detections", "calib/intrinsics"]


def run(ctx: StageContext) -> None:
    """Run the stage with OpenCV on one thread, so its solvers add up in the same order every run."""
    with single_thread_opencv():
        _run(ctx)


def _run(ctx: StageContext) -> None:
    """Calibrate every camera; cameras that fail do not stop the others, the stage then fails naming them."""
    p: CalibrateIntrinsicsParams = ctx.params
    session_path = ctx.require("session.yaml")
    session = read_yaml(session_path, "session@1")
    cameras = recording_cameras(session, session_path, p.recording, list(p.cameras))
    board = ctx.config["board"]
    failures = []
    for cam, (stream, size) in cameras.items():
        try:
            outcome = calibrate_camera(
                cam,
                ctx.require(stream),
                size,
                board,
                p.settings(),
                det_path=ctx.path(f"calib/detections/{cam}.npz"),
                yaml_path=ctx.path(f"calib/intrinsics/{cam}.yaml"),
                png_path=ctx.path(f"calib/intrinsics/{cam}.png") if p.write_png else None,
                stream_label=stream,
                progress=ctx.show_progress,
                log=ctx.log,
            )
        except PosecapError as exc:
            ctx.log.error("%s", exc)
            failures.append((cam, str(exc)))
            continue
        sol = outcome.result.solution
        ctx.log.info(
            "%s: %s fx %.1f fy %.1f cx %.1f cy %.1f, RMS %.3f px, %d of %d frames used, coverage %.0f%%",
            cam,
            p.model,
            sol.K[0, 0],
            sol.K[1, 1],
            sol.K[0, 2],
            sol.K[1, 2],
            sol.rms,
            outcome.result.used.size,
            outcome.detections.n_frames,
            100 * outcome.coverage,
        )
    if failures:
        others = ", ".join(cam for cam, _ in failures[1:])
        raise PosecapError(failures[0][1] + (f" (also failed: {others}; see the log)" if others else ""))


STAGE = Stage(
    name="calibrate_intrinsics",
    version="1",
    params_type=CalibrateIntrinsicsParams,
    inputs=_inputs,
    outputs=_outputs,
    run=run,
    summary="lens intrinsics (K, distortion) per camera from board sweeps",
)
