"""One camera's intrinsic calibration, from its stream to ``calib/intrinsics/<cam>.yaml`` and ``.png``.

detect (or reuse ``calib/detections/<cam>.npz``) -> check enough frames hold the board (else
diagnose the board definition and fail) -> select frames -> solve with outlier rejection ->
quality gates (warnings) -> write the YAML artifact and the PNG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_yaml
from pipeline.calibration.board import BoardConfig, object_points
from pipeline.calibration.board_diagnosis import diagnose
from pipeline.calibration.detect import (
    Detections,
    detect_video,
    detection_key,
    load_detections,
    open_video,
    save_detections,
)
from pipeline.calibration.intrinsics import IntrinsicsResult, calibrate
from pipeline.calibration.report_png import draw_report, write_png
from pipeline.calibration.select import Selection, coverage_score, select_frames
from pipeline.errors import ArtifactError, PosecapError

SCHEMA = "intrinsics@1"
MIN_CORNERS = 6


@dataclass(frozen=True)
class Settings:
    """The knobs of one calibration and their defaults (the stage's params take theirs from here;
    see stages/calibrate_intrinsics.py for what each does)."""

    stride: int = 0
    scan_frames: int = 1000
    max_frames: int = 120
    model: str = "pinhole5"
    blur_min_relative: float = 0.35
    outlier_k: float = 3.0
    outlier_floor_px: float = 0.5
    min_frames: int = 8
    rms_warn_px: float = 1.0
    coverage_warn: float = 0.5
    workers: int = 0
    diagnose_samples: int = 12


@dataclass(frozen=True)
class CameraOutcome:
    """What one camera's calibration produced (for logs and tests)."""

    camera: str
    result: IntrinsicsResult
    detections: Detections
    selection: Selection
    coverage: float
    warnings: list[str]
    reused_detections: bool


def check_image_size(camera: str, stream: Path, expected: tuple[int, int]) -> tuple[int, int]:
    """The stream's (width, height); a PosecapError when it differs from session.yaml's."""
    cap, size, _ = open_video(stream)
    cap.release()
    if tuple(size) != tuple(expected):
        raise PosecapError(
            f"{stream}: camera {camera} frames are {size[0]}x{size[1]} px but session.yaml says "
            f"{expected[0]}x{expected[1]}; re-run crop, or fix image_size in session.yaml"
        )
    return size


def get_detections(
    camera: str,
    stream: Path,
    det_path: Path,
    board: BoardConfig,
    settings: Settings,
    progress: bool,
    log: logging.Logger,
) -> tuple[Detections, bool]:
    """Reuse ``det_path`` when it was made from the same stream, board and stride; else detect and save.

    Before a full detection pass, the board is looked for in a few sample frames: when it is in
    none of them and another board definition matches (or the frames are blank), the run stops
    at once with that diagnosis instead of scanning the whole video for a board that is not there.
    """
    if det_path.is_file():
        try:
            det = load_detections(det_path, board.n_corners)
        except ArtifactError as exc:
            log.warning("%s: cannot reuse detections (%s); detecting again", camera, exc)
        else:
            if det.key == detection_key(stream, board, settings.stride):
                log.info("%s: reusing %d detections from %s", camera, det.n_frames, det_path)
                return det, True
    preflight = diagnose(stream, board, settings.diagnose_samples, only_if_missing=True)
    if preflight.configured.hits == 0 and (
        preflight.best is not None or 2 * preflight.blank >= preflight.samples
    ):
        raise PosecapError(
            f"camera {camera}: the board ({board.describe()}) was found in 0 of {preflight.samples} "
            f"sample frames of {stream}. {preflight.hint()}"
        )
    det = detect_video(stream, board, settings.stride, settings.workers, progress, desc=f"detect {camera}")
    save_detections(det_path, det)
    return det, False


def too_few_frames_error(
    camera: str, stream: Path, det: Detections, usable: int, board: BoardConfig, settings: Settings
) -> PosecapError:
    """The error for a camera whose board was (almost) never found, with the board diagnosis."""
    hint = diagnose(stream, board, settings.diagnose_samples).hint()
    return PosecapError(
        f"camera {camera}: the board ({board.describe()}) was found in {usable} of {det.frames_scanned} "
        f"frames examined in {stream} (need at least calibrate_intrinsics.min_frames = "
        f"{settings.min_frames}). " + hint
    )


def effective_stride(stream: Path, settings: Settings) -> int:
    """``settings.stride``, or for 0 (auto) the smallest stride that examines at most ``scan_frames``
    frames of the stream: a long sweep's neighbouring frames are near-duplicates, and the solver
    takes ``max_frames`` of them anyway."""
    if settings.stride > 0:
        return settings.stride
    cap, _, count = open_video(stream)
    cap.release()
    return max(1, -(-count // max(1, settings.scan_frames)))


def calibrate_camera(
    camera: str,
    stream: Path,
    image_size: tuple[int, int],
    board: BoardConfig,
    settings: Settings,
    det_path: Path,
    yaml_path: Path,
    png_path: Path | None = None,
    stream_label: str = "",
    progress: bool = True,
    log: logging.Logger | None = None,
) -> CameraOutcome:
    """Calibrate one camera and write its artifacts.

    Args:
        camera: camera name (for messages and the YAML).
        stream: the camera's video.
        image_size: ``(width, height)`` px the session says the stream has.
        board: the board shown in the video.
        settings: the stage's knobs.
        det_path, yaml_path, png_path: where the detections, the intrinsics and the picture go
            (no picture when ``png_path`` is None).
        stream_label: the stream path as recorded in the YAML (relative to the session).
    Raises:
        PosecapError: wrong image size, or too few frames with the board (with a diagnosis).
    """
    log = log or logging.getLogger("posecap")
    check_image_size(camera, stream, image_size)
    settings = replace(settings, stride=effective_stride(stream, settings))
    det, reused = get_detections(camera, stream, det_path, board, settings, progress, log)
    seen = np.isfinite(det.corners).all(axis=2)
    usable = int((seen.sum(axis=1) >= MIN_CORNERS).sum())
    if usable < settings.min_frames:
        raise too_few_frames_error(camera, stream, det, usable, board, settings)

    sel = select_frames(det, board, settings.max_frames, settings.blur_min_relative, MIN_CORNERS)
    if sel.selected.size < settings.min_frames:
        blurred = sel.reason.count("blurred")
        raise PosecapError(
            f"camera {camera}: only {sel.selected.size} of {det.n_frames} frames with the board in "
            f"{stream} are sharp enough ({blurred} blurred; need calibrate_intrinsics.min_frames = "
            f"{settings.min_frames}); move the board more slowly, add light, or lower "
            "calibrate_intrinsics.blur_min_relative"
        )
    obj = object_points(board)
    masks = [seen[i] for i in sel.selected]
    result = calibrate(
        [obj[m] for m in masks],
        [det.corners[i][m] for i, m in zip(sel.selected, masks)],
        image_size,
        settings.model,
        settings.outlier_k,
        settings.outlier_floor_px,
        settings.min_frames,
    )
    sol = result.solution
    coverage = coverage_score(np.concatenate(sol.image_points), image_size)

    warnings = []
    if sol.rms > settings.rms_warn_px:
        warnings.append(
            f"camera {camera}: RMS reprojection error {sol.rms:.2f} px is above "
            f"calibrate_intrinsics.rms_warn_px ({settings.rms_warn_px:g}); check focus and motion blur, "
            "that the board is flat, and board.square_size_m"
        )
    if coverage < settings.coverage_warn:
        warnings.append(
            f"camera {camera}: the board covered only {coverage:.0%} of the image "
            f"(calibrate_intrinsics.coverage_warn {settings.coverage_warn:.0%}); record again, moving the "
            "board into the corners and along the edges"
        )
    for text in warnings:
        log.warning("%s", text)

    frame_of = det.frame_index
    reasons = list(sel.reason)
    for k in result.outliers:
        reasons[int(sel.selected[k])] = "outlier"
    rejected: dict = {
        r: [int(frame_of[i]) for i, x in enumerate(reasons) if x == r]
        for r in ("blurred", "too_few_corners", "outlier")
    }
    rejected["redundant"] = reasons.count("redundant")
    per_frame = [
        {"frame": int(frame_of[sel.selected[k]]), "status": "used", "error_px": float(e)}
        for k, e in zip(result.used, sol.view_rms)
    ]
    per_frame += [
        {"frame": int(frame_of[sel.selected[k]]), "status": "outlier", "error_px": e}
        for k, e in sorted(result.outliers.items())
    ]
    per_frame.sort(key=lambda d: d["frame"])
    tilts = sel.tilt_deg[sel.selected[result.used]]
    tilts = tilts[np.isfinite(tilts)]
    write_yaml(
        yaml_path,
        {
            "camera": camera,
            "model": settings.model,
            "image_size": [int(image_size[0]), int(image_size[1])],
            "K": sol.K,
            "dist": sol.dist,
            "rms_px": round(sol.rms, 5),
            "coverage": round(coverage, 4),
            "coverage_detected": round(coverage_score(det.corners, image_size), 4),
            "tilt_deg": {
                "min": round(float(tilts.min()), 1),
                "median": round(float(np.median(tilts)), 1),
                "max": round(float(tilts.max()), 1),
            }
            if tilts.size
            else None,
            "board": board.as_yaml(),
            "stream": stream_label or str(stream),
            "frames": {
                "scanned": det.frames_scanned,
                "stride": settings.stride,
                "detected": det.n_frames,
                "used": int(result.used.size),
                "rejected": rejected,
            },
            "solver_rounds": result.rounds,
            "corners_dropped": result.corners_dropped,
            "per_frame": per_frame,
            "warnings": warnings,
        },
        SCHEMA,
    )
    if png_path is not None:
        lines = [
            f"{camera}  {settings.model}  RMS {sol.rms:.3f} px  coverage {coverage:.0%}",
            f"frames: {det.frames_scanned} examined, {det.n_frames} with board, {result.used.size} used, "
            f"{len(result.outliers)} outliers",
        ]
        write_png(png_path, draw_report(image_size, det.corners, sol.image_points, sol.residuals, lines))
    return CameraOutcome(camera, result, det, sel, coverage, warnings, reused)
