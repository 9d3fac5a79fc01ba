"""Stage calibrate_extrinsics: the pose of every camera (and the stereo pairs) from a synchronised board sweep.

Reads ``session.yaml``, ``calib/intrinsics/<cam>.yaml`` and the streams of the extrinsics
recording (``calib/streams/<recording>/<cam>.*``), and the ``board`` config section. Writes

- ``calib/extrinsics/detections/<cam>.npz``: board corners per frame (reused on the next run when
  the stream, board and stride are the same);
- ``calib/rig.yaml`` (``posecap/rig@1``, DESIGN.md) with ``reprojection_rms_px`` per camera;
- ``calib/report.yaml`` (``posecap/rig_report@1``): errors per camera and pair, the co-visibility
  graph, dropped views and why, the bundle adjustment's figures;
- ``calib/stereo/<a>-<b>.yaml`` (``posecap/stereo@1``) and ``.png`` for each stereo pair of session.yaml;
- ``calib/extrinsics/rig.png`` (top and side views of the frusta) and ``calib/extrinsics/rig.ply``
  (an open3d LineSet).

See the README (section "calibrate_extrinsics").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.calibration.blas_threads import single_thread_opencv
from pipeline.calibration.bundle_adjust import INTRINSIC_PARAMS, LOSSES
from pipeline.calibration.extrinsics import RigOptions
from pipeline.calibration.rig_init import ViewCheck
from pipeline.config import param
from pipeline.errors import ArtifactError, ConfigError, PosecapError
from pipeline.stage import Stage, StageContext

Loss = Literal["linear", "huber", "soft_l1", "cauchy", "arctan"]


# the library's defaults: the params below take theirs from these, so they live in one place
_RIG, _VIEW = RigOptions(), ViewCheck()


@dataclass(frozen=True)
class CalibrateExtrinsicsParams:
    """calibrate_extrinsics: camera poses of the whole rig (bundle adjustment) and the stereo pairs."""

    recording: str = param("extrinsics", "recording in session.yaml whose streams show the board moving through the "
                           "volume, seen by several cameras at once")
    cameras: list[str] = param([], "cameras to calibrate; empty = every camera of the recording")
    world: Literal["first_camera", "floor_board"] = param(
        "first_camera", "world frame: first_camera (the reference camera's) | floor_board (the board lying on the "
        "floor in floor_frame: corner 0 the origin, x along its first row, z up, its plane z = 0)")
    floor_frame: int = param(-1, "with world: floor_board, the frame of the recording in which the board lies on "
                             "the floor (frame index of the reference camera's stream)")
    reference_camera: str = param("", "camera whose pose is held (and is the world with first_camera); "
                                  "empty = the first camera")
    stride: int = param(1, "examine every n-th frame of each stream")
    workers: int = param(0, "detection processes; 0 = one per CPU core, 1 = no pool")
    max_frames: int = param(
        _RIG.max_frames, "most frames seen by two or more cameras that enter the adjustment (a seeded "
        "sample); 0 = all"
    )
    seed: int = param(_RIG.seed, "seed of that sample")
    min_corners: int = param(_VIEW.min_corners, "a view with fewer board corners is dropped")
    max_view_angle_deg: float = param(
        _VIEW.max_view_angle_deg, "a view whose board normal is further than this from the line of sight "
        "(edge-on) is dropped"
    )
    max_pnp_rms_px: float = param(
        _VIEW.max_pnp_rms_px, "a view whose single-view pose leaves a larger RMS error (px) is dropped"
    )
    refine_intrinsics: dict[str, list[str]] = param(
        {}, "intrinsics refined in the adjustment: camera name (or '*' for all) -> names among fx fy cx cy k1 k2 "
        "p1 p2 k3 k4 k5 k6; {} = keep the intrinsics fixed")
    loss: Loss = param(_RIG.loss, "robust loss of the adjustment: linear | huber | soft_l1 | cauchy | arctan")
    loss_scale_px: float = param(
        _RIG.loss_scale_px, "error (px) where the robust loss starts to down-weight an observation"
    )
    max_nfev: int = param(_RIG.max_nfev, "most residual evaluations of one adjustment")
    outlier_k: float = param(
        _RIG.outlier_k, "an observation is an outlier above median + k * robust sigma of the errors"
    )
    outlier_floor_px: float = param(
        _RIG.outlier_floor_px, "observations with an error below this (px) are never outliers"
    )
    outlier_rounds: int = param(_RIG.outlier_rounds, "rounds of outlier removal, each followed by a new adjustment")
    stereo_alpha: float = param(0.0, "cv2.stereoRectify alpha: 0 = only valid pixels, 1 = every source pixel")
    rms_warn_px: float = param(1.0, "warn when a camera's RMS reprojection error (px) is above this")
    write_png: bool = param(True, "write calib/extrinsics/rig.png and the stereo check pictures")
    write_ply: bool = param(True, "write calib/extrinsics/rig.ply (open3d LineSet of the frusta)")

    def __post_init__(self) -> None:
        for name in ("stride", "min_corners", "max_nfev"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_frames", "outlier_rounds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.max_view_angle_deg <= 90:
            raise ValueError(f"max_view_angle_deg must be in (0, 90], got {self.max_view_angle_deg}")
        if self.world == "floor_board" and self.floor_frame < 0:
            raise ValueError("world: floor_board needs floor_frame, the frame in which the board lies on the floor")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}")
        for cam, names in self.refine_intrinsics.items():
            bad = [n for n in names if n not in INTRINSIC_PARAMS]
            if bad:
                raise ValueError(f"refine_intrinsics.{cam}: unknown {', '.join(bad)}; choose from "
                                 f"{', '.join(INTRINSIC_PARAMS)}")
        if not -1 <= self.stereo_alpha <= 1:
            raise ValueError(f"stereo_alpha must be in [-1, 1], got {self.stereo_alpha}")


def _recording(session: dict[str, Any], path: Path, recording: str, wanted: list[str]) -> dict[str, dict]:
    """camera -> its session.yaml entry for the chosen recording (checked)."""
    recordings = session.get("recordings")
    if not isinstance(recordings, dict) or recording not in recordings:
        found = ", ".join(recordings) if isinstance(recordings, dict) else "none"
        raise ConfigError(f"{path}: no recording '{recording}' (found: {found}); set calibrate_extrinsics.recording")
    cameras = (recordings[recording] or {}).get("cameras")
    if not isinstance(cameras, dict) or not cameras:
        raise ArtifactError(f"{path}: recordings.{recording}.cameras is missing or empty; re-run crop")
    unknown = [c for c in wanted if c not in cameras]
    if unknown:
        raise ConfigError(f"calibrate_extrinsics.cameras names {', '.join(unknown)}, not in recording "
                          f"'{recording}' of {path} (cameras: {', '.join(cameras)})")
    out = {}
    for cam in wanted or list(cameras):
        entry = cameras[cam]
        where = f"{path}: recordings.{recording}.cameras.{cam}"
        if not isinstance(entry, dict) or not isinstance(entry.get("stream"), str):
            raise ArtifactError(f"{where}.stream is missing; expected the stream path relative to the session")
        size = entry.get("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ArtifactError(f"{where}.image_size is {size!r}; expected [width, height] in pixels")
        fps = entry.get("fps", 30.0)
        offset = entry.get("time_offset_s", 0.0) or 0.0
        if not isinstance(fps, (int, float)) or fps <= 0 or not isinstance(offset, (int, float)):
            raise ArtifactError(f"{where}: fps must be > 0 and time_offset_s a number; got {fps!r}, {offset!r}")
        out[cam] = {"stream": entry["stream"], "image_size": (size[0], size[1]), "fps": float(fps),
                    "time_offset_s": float(offset)}
    return out


def _intrinsics(ctx: StageContext, cam: str, size: tuple[int, int]):
    from pipeline.calibration.extrinsics import Intrinsics

    path = ctx.path(f"calib/intrinsics/{cam}.yaml")
    if not path.is_file():
        raise ArtifactError(f"{path}: intrinsics of camera {cam} missing; run calibrate_intrinsics for it first")
    data = read_yaml(path, "intrinsics@1")
    if data.get("model", "pinhole5") == "fisheye":
        raise PosecapError(f"{path}: camera {cam} uses the fisheye model, which calibrate_extrinsics does not support "
                           "yet; calibrate it with model pinhole5 or rational8")
    try:
        K = np.asarray(data["K"], np.float64).reshape(3, 3)
        dist = np.asarray(data["dist"], np.float64).ravel()
        isize = tuple(int(v) for v in data.get("image_size", size))
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(
            f"{path}: fields 'K' (3x3) and 'dist' (list) are required; re-run calibrate_intrinsics") from None
    if dist.size not in (4, 5, 8):
        raise ArtifactError(f"{path}: field 'dist' holds {dist.size} values; expected 4, 5 or 8")
    if isize != tuple(size):
        raise ArtifactError(f"{path}: camera {cam} was calibrated at {isize[0]}x{isize[1]} px but its "
                            f"{ctx.params.recording} stream is {size[0]}x{size[1]}; re-run calibrate_intrinsics")
    return Intrinsics(cam, tuple(size), K, dist)


def _detections(ctx: StageContext, cam: str, stream: Path, board) -> Any:
    from pipeline.calibration.detect import load_detections, save_detections
    from pipeline.calibration.extrinsic_detect import detect_sweep, sweep_detection_key

    p: CalibrateExtrinsicsParams = ctx.params
    det_path = ctx.path(f"calib/extrinsics/detections/{cam}.npz")
    if det_path.is_file():
        try:
            det = load_detections(det_path, board.n_corners)
        except ArtifactError as exc:
            ctx.log.warning("%s: cannot reuse detections (%s); detecting again", cam, exc)
        else:
            if det.key == sweep_detection_key(stream, board, p.stride):
                ctx.log.info("%s: reusing %d detections from %s", cam, det.n_frames, det_path)
                return det
    det = detect_sweep(stream, board, p.stride, p.workers, ctx.show_progress, desc=f"detect {cam}")
    save_detections(det_path, det)
    return det


def _inputs(ctx: StageContext) -> list[str]:
    return ["session.yaml", "calib/intrinsics", f"calib/streams/{ctx.params.recording}"]


def _outputs(ctx: StageContext) -> list[str]:
    return ["calib/rig.yaml", "calib/stereo", "calib/report.yaml", "calib/extrinsics"]


def run(ctx: StageContext) -> None:
    """Run the stage with OpenCV on one thread, so its solvers add up in the same order every run."""
    with single_thread_opencv():
        _run(ctx)


def _run(ctx: StageContext) -> None:
    """Detect, calibrate the rig, calibrate the stereo pairs, write every output."""
    from pipeline.calibration.board import object_points
    from pipeline.calibration.camera_job import check_image_size
    from pipeline.calibration.covisibility import synchronise
    from pipeline.calibration.extrinsics import calibrate_rig

    t0 = time.perf_counter()
    p: CalibrateExtrinsicsParams = ctx.params
    board = ctx.config["board"]
    session_path = ctx.require("session.yaml")
    session = read_yaml(session_path, "session@1")
    cams = _recording(session, session_path, p.recording, list(p.cameras))
    if p.reference_camera and p.reference_camera not in cams:
        raise ConfigError(f"calibrate_extrinsics.reference_camera {p.reference_camera!r} is not a camera of recording "
                          f"'{p.recording}' ({', '.join(cams)})")
    intrinsics = [_intrinsics(ctx, cam, info["image_size"]) for cam, info in cams.items()]
    per_camera, detected = {}, {}
    for cam, info in cams.items():
        stream = ctx.require(info["stream"])
        check_image_size(cam, stream, info["image_size"])
        det = _detections(ctx, cam, stream, board)
        per_camera[cam] = (det.frame_index, det.corners)
        detected[cam] = det.n_frames
        ctx.log.info("%s: board found in %d of %d frames", cam, det.n_frames, det.frames_scanned)
    timing = {cam: (info["fps"], info["time_offset_s"]) for cam, info in cams.items()}
    obs = synchronise(per_camera, timing, {c: i["image_size"] for c, i in cams.items()}, board.n_corners)
    ref_cam = p.reference_camera or next(iter(cams))
    floor = None
    if p.world == "floor_board":
        fps_ref = max(f for f, _ in timing.values())
        floor = int(round((timing[ref_cam][1] + p.floor_frame / timing[ref_cam][0]) * fps_ref))
    options = RigOptions(
        reference=ref_cam, world=p.world, floor_frame=floor,
        check=ViewCheck(p.min_corners, p.max_view_angle_deg, p.max_pnp_rms_px),
        free_intrinsics={k: tuple(v) for k, v in p.refine_intrinsics.items()}, loss=p.loss,
        loss_scale_px=p.loss_scale_px, max_nfev=p.max_nfev, outlier_k=p.outlier_k,
        outlier_floor_px=p.outlier_floor_px, outlier_rounds=p.outlier_rounds, max_frames=p.max_frames, seed=p.seed)
    cal = calibrate_rig(obs, intrinsics, object_points(board).astype(np.float64), options, ctx.log)
    for cam, rms in cal.rms_px.items():
        if rms > p.rms_warn_px:
            text = (f"camera {cam}: RMS reprojection error {rms:.2f} px is above calibrate_extrinsics.rms_warn_px "
                    f"({p.rms_warn_px:g}); check its intrinsics, the synchronisation and the detections")
            cal.warnings.append(text)
            ctx.log.warning("%s", text)

    stereo = _stereo_pairs(ctx, session, cal, obs, intrinsics, object_points(board).astype(np.float64), cams)
    cal.rig.save(ctx.path("calib/rig.yaml"), {c: {"reprojection_rms_px": round(r, 5)} for c, r in cal.rms_px.items()})
    if p.write_png or p.write_ply:
        from pipeline.calibration.rig_plot import draw_rig, write_line_set, write_png

        if p.write_png:
            centres = cal.board_t + np.einsum("bij,j->bi", cal.board_R, object_points(board).mean(axis=0))
            write_png(ctx.path("calib/extrinsics/rig.png"), draw_rig(cal.rig, centres))
        if p.write_ply:
            write_line_set(ctx.path("calib/extrinsics/rig.ply"), cal.rig)
    from pipeline.calibration.rig_report import build_report

    report = build_report(cal, p.recording, board.as_yaml(), detected, stereo,
                          {"seconds": round(time.perf_counter() - t0, 3)})
    write_yaml(ctx.path("calib/report.yaml"), report, "rig_report@1")
    ctx.path("calib/stereo").mkdir(parents=True, exist_ok=True)
    ctx.log.info("rig: %d cameras, world %s, RMS %s px (bundle adjustment %d round(s), %d evaluations)",
                 len(cal.rig), cal.rig.world, ", ".join(f"{c} {r:.3f}" for c, r in cal.rms_px.items()), cal.rounds,
                 cal.ba.nfev)


def _stereo_pairs(ctx: StageContext, session: dict, cal, obs, intrinsics, obj: np.ndarray,
                  cams: dict[str, dict]) -> dict[str, dict]:
    """Calibrate every stereo pair of session.yaml whose cameras are in the rig; returns the report entries."""
    from pipeline.calibration.rig_report import rig_baseline_mm
    from pipeline.calibration.stereo import calibrate_pair, pair_name, stereo_views

    p: CalibrateExtrinsicsParams = ctx.params
    out: dict[str, dict] = {}
    pairs = session.get("stereo_pairs") or []
    names = list(obs.cameras)
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(c, str) for c in pair)):
            raise ArtifactError(f"{ctx.path('session.yaml')}: stereo_pairs holds {pair!r}; expected [camA, camB]")
        if pair[0] not in names or pair[1] not in names:
            ctx.log.info("stereo pair %s: not both cameras in recording '%s'; skipped", pair_name(pair), p.recording)
            continue
        a, b = names.index(pair[0]), names.index(pair[1])
        usable = cal.usable[a] & cal.usable[b]
        views = stereo_views(obs.corners[a], obs.corners[b], usable, obs.frames, obj, p.min_corners)
        if views.n_views == 0:
            raise PosecapError(f"stereo pair {pair_name(pair)}: no frame of recording '{p.recording}' in which both "
                               "cameras see the board; record the board in front of both lenses")
        ia, ib = intrinsics[a], intrinsics[b]
        res = calibrate_pair(views, (pair[0], pair[1]), ia.image_size, ia.K, ia.dist, ib.K, ib.dist, p.stereo_alpha)
        name = pair_name(pair)
        rig_mm = rig_baseline_mm(cal, pair)
        write_yaml(ctx.path(f"calib/stereo/{name}.yaml"), res.as_yaml({"baseline_mm_rig": round(rig_mm, 4)}),
                   "stereo@1")
        if p.write_png:
            _stereo_png(ctx, res, obs, a, b, cams, name)
        out[name] = {"baseline_mm": round(res.baseline_mm, 4), "baseline_mm_rig": round(rig_mm, 4),
                     "rms_px": round(res.rms_px, 5), "mean_abs_dy_px": round(res.mean_rect_error_px, 5),
                     "views": int(views.n_views)}
        ctx.log.info("stereo %s: baseline %.2f mm (rig %.2f mm), RMS %.3f px, rectified mean |dy| %.3f px, %d views",
                     name, res.baseline_mm, rig_mm, res.rms_px, res.mean_rect_error_px, views.n_views)
    return out


def _read_frame(path: Path, index: int) -> np.ndarray | None:
    """Frame ``index`` of a video (decoding from the start: streams need not be seekable), or None."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index):
            if not cap.grab():
                return None
        ok, frame = cap.read()
        return frame if ok else None
    finally:
        cap.release()


def _stereo_png(ctx: StageContext, res, obs, a: int, b: int, cams: dict[str, dict], name: str) -> None:
    """The rectified check picture of the shared frame with the most corners."""
    from pipeline.calibration.rig_plot import write_png
    from pipeline.calibration.stereo import check_image

    pos = {int(f): i for i, f in enumerate(obs.frames)}
    both = [pos[int(f)] for f in res.frames]
    seen = np.isfinite(obs.corners[a]).all(-1) & np.isfinite(obs.corners[b]).all(-1)
    f = max(both, key=lambda i: (int(seen[i].sum()), -i))
    images = []
    for c in (a, b):
        own = int(obs.source_frames[c, f])
        stream = ctx.path(cams[obs.cameras[c]]["stream"])
        frame = _read_frame(stream, own)
        if frame is None:
            ctx.log.warning("stereo %s: cannot read frame %d of %s; no check picture", name, own, stream)
            return
        images.append(frame)
    m = seen[f]
    write_png(ctx.path(f"calib/stereo/{name}.png"),
              check_image(res, images[0], images[1], obs.corners[a, f, m], obs.corners[b, f, m]))


STAGE = Stage(
    name="calibrate_extrinsics",
    version="1",
    params_type=CalibrateExtrinsicsParams,
    inputs=_inputs,
    outputs=_outputs,
    run=run,
    summary="camera poses of the rig (bundle adjustment) and stereo pairs from a board sweep",
)
