"""Stage ``pose2d``: 2D keypoints for every capture camera, from the built-in models or the user's own.

Reads ``session.yaml`` and the capture ``streams/`` (and the weights files, so a new checkpoint
reruns the stage); writes ``pose2d/<cam>.npz`` (``shared/DESIGN.md``) and ``pose2d/pose2d.yaml``
(backend, weights digest, settings, per-camera detection counts, timing). Chunk checkpoints of
an unfinished run sit in ``pose2d/.partial/`` and are removed when the stage finishes. See
``docs/pose2d.md``. The work goes out as tasks on the engine's executor (``task_frames``): one
for all cameras, or frame ranges of each camera that run in parallel and merge in frame order.
The tasks return their chunk checkpoints' files, not keypoints; each ``pose2d/<cam>.npz`` is
streamed from those files one chunk at a time, so memory does not grow with the take.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.config import param
from pipeline.errors import ArtifactError, ConfigError
from pipeline.pose2d.io import (
    ChunkInfo,
    ChunkStore,
    CountedBlocks,
    chunk_blocks,
    clear_partial,
    frame_blocks,
    write_pose2d_blocks,
)
from pipeline.skeleton import Skeleton, get_skeleton, remap_joints
from pipeline.stage import Stage, StageContext

log = logging.getLogger("posecap")

SESSION_YAML = "session.yaml"
STREAMS = "streams"
POSE2D = "pose2d"
META = "pose2d/pose2d.yaml"
Backend = Literal["bottomup", "topdown", "vitpose", "onnx", "import"]


@dataclass(frozen=True)
class Pose2dParams:
    """pose2d: 2D keypoints per camera (backend, weights, boxes, batching, checkpoints)."""

    backend: Backend = param("topdown", "bottomup | topdown | vitpose | onnx | import (see docs/pose2d.md)")
    skeleton: str = param("coco17", "joint order written to pose2d/<cam>.npz (coco17, body25)")
    device: Literal["auto", "cpu", "cuda"] = param("auto", "auto: cuda when available, else cpu")
    bf16: bool = param(True, "bf16 autocast on cuda (ignored on cpu)")
    threads: int = param(0, "torch CPU threads (0 = torch's default)")
    bottomup_weights: str = param("", "bottom-up checkpoint (.pt path or a shipped name); empty = the shipped "
                                  "bottomup_ae")
    topdown_weights: str = param("", "top-down checkpoint (.pt path, or a shipped name: topdown_heatmap, "
                                 "topdown_simcc); empty = the shipped topdown_heatmap")
    vitpose_weights: str = param("", "vitpose backend: Hugging Face ViTPose folder (config.json + weights)")
    onnx_model: str = param("", "onnx backend: .onnx file with RTMPose's contract (simcc_x/simcc_y or heatmaps)")
    onnx_heatmap_unbiased: bool = param(True, "onnx heatmap models: UDP (size - 1) decoding; false for MSRA heatmaps")
    bottomup_input_size: tuple[int, int] | None = param(
        None, "[w, h] bottom-up network resolution (multiples of its stride); null = the model's own")
    crop: Literal["native", "fixed"] = param(
        "native", "top-down crops: native = own size, packed (heatmap models); fixed = warped to the input size")
    native_min_side: int = param(64, "native crops: smallest longer side, pixels (smaller boxes are upscaled)")
    native_max_side: int | None = param(
        None, "native crops: largest longer side, pixels (larger boxes are downscaled); null = the model's input "
              "size, the scale it was trained at")
    flip_test: bool = param(False, "top-down heatmap models: average with the mirrored crop (twice the work)")
    bottomup_flip_test: bool = param(False, "bottom-up model (the bottomup backend and the top-down detector): "
                                     "average with the mirrored frame, group on both tag sets (twice its work)")
    boxes: Literal["track", "detect"] = param(
        "detect", "top-down person boxes: detect = the bottom-up detector on every frame; track = previous "
                  "frame's people plus detections every refresh_every frames (faster; boxes can drift)")
    refresh_every: int = param(5, "top-down: run the bottom-up detector every N frames to find new people; "
                                  "people already found are tracked from frame to frame")
    box_padding: float = param(1.25, "top-down: box = joint box x padding")
    box_score_threshold: float = param(0.2, "top-down: joints scoring at least this make a person's box")
    box_nms_iou: float = param(0.5, "top-down: a detection overlapping a tracked box this much is the same person")
    min_joints: int = param(4, "persons with fewer found joints are dropped")
    min_person_score: float = param(0.2, "persons with a lower mean joint score are dropped")
    detector_min_person_score: float = param(0.1, "bottom-up: persons with a lower mean joint score are dropped")
    batch_frames: int = param(8, "frames per network batch (bottom-up and detector)")
    chunk_frames: int = param(64, "frames per checkpoint chunk (a multiple of batch_frames)")
    task_frames: int = param(0, "0 = one task runs every camera in turn; N = each camera's frames cut into "
                                "tasks of N (rounded down to whole chunks) that run in parallel; with boxes: "
                                "track each task starts a fresh tracker")
    queue_frames: int = param(16, "decoded frames buffered ahead of the network (bounds memory)")
    import_format: Literal["openpose", "coco", "dlc"] = param(
        "openpose", "import: openpose (folder <cam>/ of JSON), coco (<cam>.json), dlc (<cam>*.csv)")
    import_path: str = param("", "import: folder holding the per-camera files, relative to the config file")

    def __post_init__(self) -> None:
        for key in ("refresh_every", "batch_frames", "chunk_frames", "queue_frames", "native_min_side"):
            if getattr(self, key) < 1:
                raise ValueError(f"'{key}' must be >= 1, got {getattr(self, key)}")
        if self.chunk_frames % self.batch_frames:
            raise ValueError(f"'chunk_frames' ({self.chunk_frames}) must be a multiple of 'batch_frames' "
                             f"({self.batch_frames})")
        if self.native_max_side is not None and self.native_max_side < self.native_min_side:
            raise ValueError("'native_max_side' must be >= 'native_min_side'")
        if self.box_padding < 1.0:
            raise ValueError(f"'box_padding' must be >= 1, got {self.box_padding}")
        for key in ("box_score_threshold", "box_nms_iou", "min_person_score", "detector_min_person_score"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"'{key}' must be in [0, 1], got {getattr(self, key)}")
        if self.threads < 0:
            raise ValueError(f"'threads' must be >= 0, got {self.threads}")
        if self.task_frames < 0:
            raise ValueError(f"'task_frames' must be >= 0, got {self.task_frames}")


# ----------------------------------------------------------------------------- inputs


def _config_path(ctx: StageContext, value: str) -> Path:
    return (ctx.config_dir / value).resolve()


def weight_paths(ctx: StageContext) -> dict[str, Path]:
    """Role -> weights path the configured backend reads (``bottomup``, ``topdown``, ``vitpose``, ``onnx``)."""
    from pipeline.pose2d.build import default_weights
    from pipeline.weights import available

    p: Pose2dParams = ctx.params

    def weights(value: str, default: str) -> Path:
        # empty: the shipped default; a shipped checkpoint's name (topdown_simcc, ...); else a path
        if not value:
            return default_weights(default)
        return default_weights(value) if value in available() else _config_path(ctx, value)

    bottomup = weights(p.bottomup_weights, "bottomup_ae")
    if p.backend == "bottomup":
        return {"bottomup": bottomup}
    if p.backend == "topdown":
        return {"bottomup": bottomup, "topdown": weights(p.topdown_weights, "topdown_heatmap")}
    if p.backend == "vitpose":
        if not p.vitpose_weights:
            raise ConfigError("pose2d.vitpose_weights is empty; set it to a Hugging Face ViTPose folder")
        return {"bottomup": bottomup, "vitpose": _config_path(ctx, p.vitpose_weights)}
    if p.backend == "onnx":
        if not p.onnx_model:
            raise ConfigError("pose2d.onnx_model is empty; set it to an .onnx file")
        return {"bottomup": bottomup, "onnx": _config_path(ctx, p.onnx_model)}
    return {}


def _inputs(ctx: StageContext) -> list[str]:
    p: Pose2dParams = ctx.params
    if p.backend == "import":
        if not p.import_path:
            raise ConfigError("pose2d.import_path is empty; set it to the folder of the keypoint files")
        return [SESSION_YAML, str(_config_path(ctx, p.import_path))]
    return [SESSION_YAML, STREAMS, *(str(w) for w in weight_paths(ctx).values())]


def _outputs(ctx: StageContext) -> list[str]:
    return [POSE2D]


# ----------------------------------------------------------------------------- session


@dataclass(frozen=True)
class _Camera:
    name: str
    stream: Path
    frames: int
    fps: float | None


def capture_cameras(session_dir: Path) -> list[_Camera]:
    """The capture recording's cameras from ``session.yaml`` (stream, frame count, fps)."""
    path = session_dir / SESSION_YAML
    if not path.is_file():
        raise ArtifactError(f"{path}: required input missing; run crop first")
    data = read_yaml(path, "session@1")
    recordings = data.get("recordings") or {}
    captures = [(n, r) for n, r in recordings.items() if isinstance(r, dict) and r.get("kind") == "capture"]
    if not captures:
        raise ArtifactError(f"{path}: no recording of kind 'capture'; add the capture take to crop.recordings")
    name, rec = captures[0]
    cams = rec.get("cameras") or {}
    if not isinstance(cams, dict) or not cams:
        raise ArtifactError(f"{path}: field 'recordings.{name}.cameras' is empty; expected camera -> stream entries")
    out = []
    for cam, entry in cams.items():
        if not isinstance(entry, dict) or not entry.get("stream"):
            raise ArtifactError(f"{path}: field 'recordings.{name}.cameras.{cam}.stream' missing")
        frames = entry.get("frame_count")
        if not isinstance(frames, int) or frames < 0:
            raise ArtifactError(f"{path}: field 'recordings.{name}.cameras.{cam}.frame_count' must be an "
                                f"integer >= 0; got {frames!r}")
        fps = entry.get("fps")
        out.append(_Camera(str(cam), session_dir / str(entry["stream"]), frames,
                           float(fps) if isinstance(fps, (int, float)) and fps > 0 else None))
    return out


# ----------------------------------------------------------------------------- backends


def build_backend(p: Pose2dParams, weights: dict[str, Path], device: Any) -> Any:
    """The backend object for ``p.backend`` (models loaded on ``device``)."""
    from pipeline.pose2d.backends import BottomUpBackend, BoxOptions, TopDownBackend
    from pipeline.pose2d.build import load_posecap_model
    from pipeline.pose2d.estimators import BottomUpEstimator, TorchTopDown

    detector = BottomUpEstimator(load_posecap_model(weights["bottomup"], device, p.bf16, head="bottomup"),
                                 p.bottomup_input_size, p.detector_min_person_score, min_joints=3,
                                 flip_test=p.bottomup_flip_test)
    if p.backend == "bottomup":
        return BottomUpBackend(detector)
    native = p.crop == "native"
    if p.backend == "topdown":
        model = load_posecap_model(weights["topdown"], device, p.bf16, head="topdown")
        estimator: Any = TorchTopDown(model, native, p.native_min_side, p.native_max_side, flip_test=p.flip_test)
    elif p.backend == "vitpose":
        import dataclasses as dc

        from pipeline.model.vitpose_weights import load_vitpose

        model = load_vitpose(weights["vitpose"]).to(device)
        model.config = dc.replace(model.config, autocast=bool(p.bf16))
        estimator = TorchTopDown(model, native, p.native_min_side, p.native_max_side, flip_test=p.flip_test)
    else:
        from pipeline.pose2d.onnx import OnnxTopDown

        estimator = OnnxTopDown(weights["onnx"], device.type, p.onnx_heatmap_unbiased)
    options = BoxOptions(track=p.boxes == "track", refresh_every=p.refresh_every, padding=p.box_padding,
                         score_threshold=p.box_score_threshold,
                         nms_iou=p.box_nms_iou, min_joints=p.min_joints, min_person_score=p.min_person_score)
    return TopDownBackend(estimator, detector, options, name=p.backend)


def _model_skeleton(backend: Any, p: Pose2dParams) -> str:
    """Joint order of the backend's outputs: the posecap model's own; COCO-17 for ViTPose and ONNX."""
    model = getattr(backend.estimator, "model", None)
    name = model.config.skeleton if model is not None and p.backend != "vitpose" else "coco17"
    if get_skeleton(name).num_joints != backend.joints:
        raise ConfigError(f"pose2d: the {p.backend} model outputs {backend.joints} joints but its skeleton "
                          f"{name!r} has {get_skeleton(name).num_joints}; use a COCO-17 model")
    return name


_RUN_ONLY = ("device", "threads", "batch_frames", "chunk_frames", "queue_frames")


def checkpoint_key(p: Pose2dParams, digests: dict[str, str], camera: _Camera) -> str:
    """What the chunks of one camera depend on: settings, weights and the stream file."""
    st = camera.stream.stat()
    settings = {k: v for k, v in dataclasses.asdict(p).items() if k not in _RUN_ONLY[1:]}
    doc = {"settings": settings, "weights": digests, "stream": [str(camera.stream), st.st_size, st.st_mtime_ns],
           "batch_frames": p.batch_frames}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class _Keypoints:
    """One camera's keypoints (T, people, joints, 3), as blocks along the frame axis made when asked for.

    ``blocks()`` yields arrays (n_i, P_i <= people, joints, 3) in frame order: a network backend's
    are its chunk checkpoints, read one at a time; an imported camera's is its whole array.
    """

    people: int
    joints: int
    blocks: Callable[[], Iterator[np.ndarray]]


def _run_import(ctx: StageContext, cameras: list[_Camera], frames: int) -> tuple[dict[str, _Keypoints], dict]:
    from pipeline.pose2d.formats import read_source

    p: Pose2dParams = ctx.params
    root = _config_path(ctx, p.import_path)
    skeleton = get_skeleton(p.skeleton)
    out = {}
    for c in cameras:  # imported files are read whole (not a streaming path)
        kp = read_source(root, c.name, p.import_format, frames, skeleton)
        out[c.name] = _Keypoints(kp.shape[1], kp.shape[2], partial(iter, (kp,)))
    return out, {"import": {"format": p.import_format, "path": str(root)}}


@dataclass(frozen=True)
class _Task:
    """One pose2d task: camera streams or frame ranges of them, run with one backend in turn."""

    params: Pose2dParams
    weights: dict[str, Path]
    jobs: tuple[Any, ...]  # pipeline.pose2d.runner.CameraJob
    pose2d_dir: Path
    keys: dict[str, str]  # camera -> checkpoint key
    show_progress: bool


@dataclass(frozen=True)
class _TaskResult:
    results: list[Any]  # pipeline.pose2d.runner.CameraResult per job
    model_skeleton: str
    device: str
    detector_frames: int | None


def run_task(task: _Task) -> _TaskResult:
    """Load the models and run the task's jobs (in any process: a pool worker, a Ray worker, or here)."""
    import torch

    from pipeline.pose2d.build import resolve_device
    from pipeline.pose2d.runner import RunOptions, run_cameras

    p = task.params
    if p.threads:
        torch.set_num_threads(p.threads)
    device = resolve_device(p.device)
    backend = _cached_backend(p, task.weights, device)
    model_skeleton = _model_skeleton(backend, p)
    stores = {j.name: ChunkStore(task.pose2d_dir, j.name, task.keys[j.name]) for j in task.jobs}
    options = RunOptions(p.batch_frames, p.chunk_frames, p.queue_frames, task.show_progress)
    detector_before = getattr(backend, "detector_frames", None)
    results = run_cameras(backend, list(task.jobs), stores, options)
    detector = None if detector_before is None else backend.detector_frames - detector_before
    return _TaskResult(results, model_skeleton, str(device), detector)


_BACKEND_CACHE: dict[str, Any] = {}


def _cached_backend(p: Pose2dParams, weights: dict[str, Path], device: Any) -> Any:
    """The backend of the last task this process ran, when the models and settings are the same.

    A worker process (pool or Ray) runs many tasks of one batch; loading the models once per
    worker instead of once per task saves seconds per task. Reuse is exact: ``run_camera``
    resets the backend's tracker state at the start of every job.
    """
    stamps = {role: [str(path), path.stat().st_size, path.stat().st_mtime_ns] for role, path in weights.items()}
    settings = {k: v for k, v in dataclasses.asdict(p).items() if k not in _RUN_ONLY}
    key = json.dumps({"settings": settings, "weights": stamps, "device": str(device)}, sort_keys=True, default=str)
    if key not in _BACKEND_CACHE:
        _BACKEND_CACHE.clear()  # one backend at a time: models can be large
        _BACKEND_CACHE[key] = build_backend(p, weights, device)
    return _BACKEND_CACHE[key]


def _tasks(ctx: StageContext, cameras: list[_Camera], weights: dict[str, Path], digests: dict[str, str]) -> list[_Task]:
    """``task_frames`` 0: one task for every camera; else each camera's frames cut into ranges of whole chunks."""
    from pipeline.pose2d.runner import CameraJob

    p: Pose2dParams = ctx.params
    keys = {c.name: checkpoint_key(p, digests, c) for c in cameras}
    for c in cameras:  # open (and clear stale) checkpoint folders here, before tasks share them
        ChunkStore(ctx.path(POSE2D), c.name, keys[c.name])
    if p.task_frames == 0:
        jobs = [tuple(CameraJob(c.name, c.stream, c.frames, c.fps) for c in cameras)]
    else:
        step = max(p.chunk_frames, p.task_frames // p.chunk_frames * p.chunk_frames)
        jobs = [(CameraJob(c.name, c.stream, c.frames, c.fps, t0, min(c.frames, t0 + step)),)
                if c.frames else (CameraJob(c.name, c.stream, c.frames, c.fps),)  # unknown length: one task
                for c in cameras for t0 in (range(0, c.frames, step) if c.frames else [0])]
    show = ctx.show_progress and len(jobs) == 1
    return [_Task(p, weights, j, ctx.path(POSE2D), {n: keys[n] for n in (x.name for x in j)}, show) for j in jobs]


def _resources(p: Pose2dParams) -> Any:
    from pipeline.executors import Resources

    if p.device == "cpu":
        return Resources()
    return Resources(gpus=1.0, gpus_if_available=p.device == "auto")


def _remapped_chunks(chunks: Iterable[ChunkInfo], source: Skeleton, skeleton: Skeleton) -> Iterator[np.ndarray]:
    """Each chunk's keypoints (n, P, J_source, 3), read from its file, in ``skeleton``'s joint order (n, P, J, 3)."""
    for kp in chunk_blocks(chunks):
        yield kp if source.name == skeleton.name else remap_joints(kp, source, skeleton)


def _run_models(ctx: StageContext, cameras: list[_Camera]) -> tuple[dict[str, _Keypoints], dict]:
    from pipeline.pose2d.build import weights_digest

    p: Pose2dParams = ctx.params
    weights = weight_paths(ctx)
    for role, path in weights.items():
        if not path.exists():
            raise ConfigError(f"{path}: {role} weights not found; set pose2d.{role}_weights"
                              if role in ("bottomup", "topdown", "vitpose") else
                              f"{path}: ONNX model not found; check pose2d.onnx_model")
    digests = {role: weights_digest(path) for role, path in weights.items()}
    outcomes = ctx.map(run_task, _tasks(ctx, cameras, weights, digests), _resources(p))
    model_skeleton = outcomes[0].model_skeleton
    skeleton = get_skeleton(p.skeleton)
    source = get_skeleton(model_skeleton)

    out, timing = {}, {}
    for cam in cameras:  # ranges come back in frame order; their chunks are streamed in that order
        parts = [r for o in outcomes for r in o.results if r.name == cam.name]
        chunks = [c for r in parts for c in r.chunks]
        out[cam.name] = _Keypoints(max((r.people for r in parts), default=0), skeleton.num_joints,
                                   partial(_remapped_chunks, chunks, source, skeleton))
        seconds, computed = sum(r.seconds for r in parts), sum(r.frames_computed for r in parts)
        timing[cam.name] = {"seconds": round(seconds, 3), "frames_computed": computed,
                            "frames_per_s": round(computed / seconds, 3) if seconds > 0 else None,
                            "resumed_at_frame": parts[0].resumed_at, "tasks": len(parts)}
    detector = [o.detector_frames for o in outcomes]
    info = {"weights": {role: {"path": str(path), "digest": digests[role]} for role, path in weights.items()},
            "device": outcomes[0].device, "model_skeleton": model_skeleton, "camera_timing": timing,
            "detector_frames": None if None in detector else sum(detector)}
    return out, info


def run(ctx: StageContext) -> None:
    p: Pose2dParams = ctx.params
    try:
        skeleton = get_skeleton(p.skeleton)
    except ConfigError as exc:
        raise ConfigError(f"pose2d.skeleton: {exc}") from None
    cameras = capture_cameras(ctx.session_dir)
    frames = max(c.frames for c in cameras)
    t0 = time.perf_counter()
    if p.backend == "import":
        keypoints, info = _run_import(ctx, cameras, frames)
    else:
        keypoints, info = _run_models(ctx, cameras)
    people = max((k.people for k in keypoints.values()), default=0)
    folder = ctx.path(POSE2D)
    folder.mkdir(parents=True, exist_ok=True)
    per_camera = {}
    for cam in cameras:  # a stream that broke off: the rest of its frames are empty (frame_blocks)
        kp = keypoints[cam.name]
        blocks = CountedBlocks(frame_blocks(kp.blocks(), frames, people, kp.joints))
        write_pose2d_blocks(folder / f"{cam.name}.npz", blocks, frames, people, kp.joints)
        counts = blocks.counts
        if counts.detections == 0:
            ctx.log.warning("pose2d: camera %s: no person detected in any of its %d frames; its pose2d file "
                            "is empty (check the stream, or lower pose2d.min_person_score)", cam.name, frames)
        per_camera[cam.name] = {"frames": frames, "detections": counts.detections,
                                "frames_with_detections": counts.frames_with_detections,
                                "max_people": counts.max_people}
    for stale in folder.glob("*.npz"):
        if stale.stem not in keypoints:
            stale.unlink()
    seconds = time.perf_counter() - t0
    write_yaml(ctx.path(META), {
        "backend": p.backend,
        "skeleton": skeleton.name,
        "joint_names": list(skeleton.joint_names),
        **info,
        "settings": dataclasses.asdict(p),
        "cameras": per_camera,
        "timing": {"seconds": round(seconds, 3),
                   "frames_per_s": round(frames * len(cameras) / seconds, 3) if seconds > 0 else None},
    }, "pose2d@1")
    clear_partial(folder)
    ctx.log.info("pose2d: %s backend, %d cameras, %d frames, %.1f s", p.backend, len(cameras), frames, seconds)


STAGE = Stage(
    name="pose2d",
    version="1",
    params_type=Pose2dParams,
    inputs=_inputs,
    outputs=_outputs,
    run=run,
    summary="2D keypoints per camera from the built-in models, ViTPose, ONNX or imported files (pose2d/)",
)
