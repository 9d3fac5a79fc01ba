"""Write a complete synthetic session: raw recordings, ground truth and a session config.

Layout of ``OUT_DIR`` (see ``docs/CONTRACTS.md``)::

    posecap.yaml                       session config (crop recordings, board, stereo pairs)
    raw/{intrinsics,extrinsics,capture}/{quad,stereo}.<ext>
    ground_truth/rig.yaml              posecap/rig@1, world = floor (z up, metres)
    ground_truth/mosaics.yaml          posecap/synth_mosaics@1: tile rects per raw file
    ground_truth/boards.npz            board poses and projected corners per recording and camera
    ground_truth/people.npz            3D joints, 2D projections and visibility per camera
    ground_truth/options.yaml          posecap/synth_options@1: the options (rebuilds everything)

Every file is written atomically; the same options give byte-identical files.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.artifacts import atomic_path, dump_yaml_text, read_yaml, write_bytes, write_npz, write_yaml
from pipeline.errors import PosecapError
from pipeline.synth.board import BoardRenderer, corners_world
from pipeline.synth.mosaic import compose, timestamp_text
from pipeline.synth.people import COCO17
from pipeline.synth.render import CameraRenderer, SensorParams
from pipeline.synth.render_people import joint_visibility
from pipeline.synth.rig import QUAD_CAMERAS, STEREO_CAMERAS, write_rig
from pipeline.synth.scene import CODECS, RECORDINGS, Scene, SynthOptions, build_scene

GROUPS = {"quad": QUAD_CAMERAS, "stereo": STEREO_CAMERAS}


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_session` wrote."""

    out_dir: Path
    files: tuple[Path, ...]
    frames: dict[str, int]
    seconds: float


class Renderers:
    """Lazily built per-camera renderers and the board renderer for a scene."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        opts = scene.options
        self.sensor = SensorParams(noise_sigma=opts.noise_sigma, blur_sigma=opts.blur_sigma)
        self._cams: dict[str, CameraRenderer] = {}
        self._board: BoardRenderer | None = None

    def camera(self, name: str) -> CameraRenderer:
        if name not in self._cams:
            self._cams[name] = CameraRenderer(self.scene.cameras[name], self.scene.camera_index(name),
                                              self.scene.options.seed, self.scene.options.supersample,
                                              self.sensor)
        return self._cams[name]

    @property
    def board(self) -> BoardRenderer:
        if self._board is None:
            self._board = BoardRenderer.create(self.scene.options.board_spec)
        return self._board

    def frame(self, recording: str, camera: str, index: int) -> np.ndarray:
        """One camera image of a recording (uint8 BGR, before the mosaic's timestamp)."""
        cr = self.camera(camera)
        if recording == "capture":
            return cr.people_frame(self.scene.capture_points(camera)[index], self.scene.people, index)[0]
        pose = self.scene.boards[recording][camera][index]
        return cr.board_frame(self.board, pose, recording, index)


@functools.lru_cache(maxsize=2)
def renderers_for(options: SynthOptions) -> Renderers:
    """Renderers for the scene of ``options``, cached (building a camera's rays and room plate costs ~1 s)."""
    return Renderers(build_scene(options))


def render_camera_frames(source: Scene | SynthOptions | str | os.PathLike, recording: str, camera: str,
                         frames: Iterable[int] | None = None) -> np.ndarray:
    """Re-render one camera's images of a recording exactly as they were recorded.

    Args:
        source: a scene, its options, or a session folder written by :func:`generate_session`.
        recording: ``intrinsics``, ``extrinsics`` or ``capture``.
        camera: a camera name (``cam0`` … ``stereo_r``).
        frames: frame indices (default: all).

    Returns:
        (F, h, w, 3) uint8 BGR, the tile contents before the DVR timestamp is burned in.
    """
    scene = _scene_of(source)
    if recording not in RECORDINGS:
        raise ValueError(f"recording must be one of {RECORDINGS}; got {recording!r}")
    if camera not in scene.cameras:
        raise ValueError(f"camera must be one of {list(scene.cameras)}; got {camera!r}")
    group = "stereo" if camera in STEREO_CAMERAS else "quad"
    idx = range(scene.options.frames(recording, group)) if frames is None else list(frames)
    r = renderers_for(scene.options)
    return np.stack([r.frame(recording, camera, i) for i in idx])


def _scene_of(source: Scene | SynthOptions | str | os.PathLike) -> Scene:
    if isinstance(source, Scene):
        return source
    if isinstance(source, SynthOptions):
        return build_scene(source)
    return build_scene(read_options(source))


def read_options(out_dir: str | os.PathLike) -> SynthOptions:
    """The options a session folder was generated with (``ground_truth/options.yaml``)."""
    path = Path(out_dir) / "ground_truth" / "options.yaml"
    data = read_yaml(path, "synth_options@1")
    try:
        return SynthOptions.from_mapping(data)
    except (TypeError, ValueError) as exc:
        raise PosecapError(f"{path}: {exc}; regenerate the session with posecap synth") from None


def raw_path(recording: str, group: str, options: SynthOptions) -> str:
    """Relative path of a raw recording file (``raw/<recording>/<group><ext>``)."""
    return f"raw/{recording}/{group}{options.video_ext}"


def _write_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int],
                 options: SynthOptions, fps: float | None = None) -> None:
    fourcc = cv2.VideoWriter_fourcc(*CODECS[options.codec][0])
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, fourcc, options.fps if fps is None else fps, size)
        if not writer.isOpened():
            raise PosecapError(f"{path}: OpenCV cannot write codec {options.codec!r}; try --codec mjpg")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()


def _render_file(out: Path, options: SynthOptions, recording: str, group: str) -> dict[str, np.ndarray]:
    """Render and write one raw recording file; returns people ground truth for capture files.

    Runs in a worker process: it rebuilds the (deterministic) scene from ``options`` and keeps
    the per-camera renderers for the next file this process renders.
    """
    renderers = renderers_for(options)
    scene = renderers.scene
    layout = scene.layouts[group]
    people_gt: dict[str, np.ndarray] = {}

    def frames() -> Iterable[np.ndarray]:
        for i in range(options.frames(recording, group)):
            tiles = {}
            for cam in GROUPS[group]:
                if recording == "capture":
                    points = scene.capture_points(cam)[i]
                    img, buffers = renderers.camera(cam).people_frame(points, scene.people, i)
                    _collect_people(people_gt, scene, cam, i, buffers)
                else:
                    img = renderers.frame(recording, cam, i)
                tiles[cam] = img
            stamp = timestamp_text(scene.start_times[recording], i, options.fps) if group == "quad" else None
            yield compose(layout, tiles, stamp)

    fps = options.stereo_capture_fps if (recording, group) == ("capture", "stereo") else options.fps
    _write_video(out / raw_path(recording, group, options), frames(), layout.frame_size, options, fps)
    return people_gt


def generate_session(out_dir: str | os.PathLike, options: SynthOptions | None = None,
                     show_progress: bool = True, workers: int | None = None) -> SynthSummary:
    """Render and write a whole synthetic session into ``out_dir`` (see the module docstring).

    Args:
        out_dir: the folder to write (created; existing files of the same names are replaced).
        options: what to generate (defaults build ``calib_data/``).
        show_progress: draw a tqdm bar (one step per raw file).
        workers: processes rendering raw files in parallel (default: up to 2, by CPU count).
            The output does not depend on it.
    """
    options = SynthOptions() if options is None else options
    out = Path(out_dir)
    t0 = time.perf_counter()
    scene = build_scene(options)
    jobs = [(recording, group) for recording in RECORDINGS for group in GROUPS]
    # Largest files first so the pool stays busy.
    jobs.sort(key=lambda j: -options.frames(j[0], j[1]) * (2 if j[1] == "quad" else 1))
    workers = max(1, min(2, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    people_gt: dict[str, np.ndarray] = {}
    with tqdm(total=len(jobs), desc="synth", unit="file", disable=not show_progress, leave=False) as bar:
        if workers == 1:
            for recording, group in jobs:
                people_gt.update(_render_file(out, options, recording, group))
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_render_file, out, options, rec, grp) for rec, grp in jobs]
                for fut in as_completed(futures):
                    people_gt.update(fut.result())
                    bar.update(1)
    files = [out / raw_path(recording, group, options) for recording in RECORDINGS for group in GROUPS]
    files += _write_ground_truth(out, scene, people_gt)
    files.append(_write_config(out, scene))
    counts = {r: options.frames(r) for r in RECORDINGS}
    return SynthSummary(out, tuple(files), counts, time.perf_counter() - t0)


def _collect_people(acc: dict[str, np.ndarray], scene: Scene, cam: str, i: int, buffers) -> None:
    """Store one frame's 2D projections and visibility of every joint in one camera."""
    points = scene.capture_points(cam)
    T, P = points.shape[:2]
    if f"uv_{cam}" not in acc:
        acc[f"uv_{cam}"] = np.full((T, P, len(COCO17), 2), np.nan, np.float32)
        acc[f"visible_{cam}"] = np.zeros((T, P, len(COCO17)), bool)
    uv, vis = joint_visibility(scene.cameras[cam], points[i], buffers, scene.people,
                               scene.options.supersample)
    acc[f"uv_{cam}"][i] = uv
    acc[f"visible_{cam}"][i] = vis


def board_corners_px(scene: Scene, recording: str, cam: str) -> np.ndarray:
    """(F, N, 2) ground-truth board corners in distorted pixels; NaN outside the image or back-facing."""
    camera = scene.cameras[cam]
    spec = scene.options.board_spec
    out = []
    for pose in scene.boards[recording][cam]:
        pts = corners_world(spec, pose)
        uv = camera.project(pts)
        ray = pose.origin - camera.center_world
        facing = (ray @ pose.R[:, 2]) > 0
        ok = camera.in_image(uv) & facing
        out.append(np.where(ok[:, None], uv, np.nan))
    return np.stack(out).astype(np.float32)


def _write_ground_truth(out: Path, scene: Scene, people_gt: dict[str, np.ndarray]) -> list[Path]:
    gt = out / "ground_truth"
    options = scene.options
    files = [gt / "rig.yaml", gt / "mosaics.yaml", gt / "boards.npz", gt / "people.npz", gt / "options.yaml"]
    write_rig(files[0], list(scene.cameras.values()))
    mosaics = {}
    for recording in RECORDINGS:
        for group in GROUPS:
            layout = scene.layouts[group].to_mapping()
            stereo_capture = (recording, group) == ("capture", "stereo")
            layout.update({
                "recording": recording,
                "kind": recording,
                "fps": options.stereo_capture_fps if stereo_capture else options.fps,
                "frame_count": options.frames(recording, group),
                "timestamp_camera": "cam0" if group == "quad" else None,
                "start_time": scene.start_times[recording].isoformat() if group == "quad" else None,
            })
            if stereo_capture and options.stereo_clock_differs:
                layout["time_offset_s"] = options.stereo_offset_s
            mosaics[raw_path(recording, group, options)] = layout
    write_yaml(files[1], {"files": mosaics}, "synth_mosaics@1")
    spec = options.board_spec
    boards: dict[str, np.ndarray] = {
        "object_points": spec.object_points(),
        "inner_corners": np.asarray(spec.inner_corners, np.int64),
        "square_size_m": np.float64(spec.square_size_m),
    }
    for recording in ("intrinsics", "extrinsics"):
        for cam in scene.cameras:
            boards[f"pose_{recording}_{cam}"] = np.stack([p.matrix() for p in scene.boards[recording][cam]])
            boards[f"corners_{recording}_{cam}"] = board_corners_px(scene, recording, cam)
    write_npz(files[2], **boards)
    people = {
        "joints": scene.points[:, :, :len(COCO17)].astype(np.float32),
        "frame_index": np.arange(options.capture_frames, dtype=np.int64),
        "heights_m": np.array([p.height for p in scene.people]),
        **{k: people_gt[k] for k in sorted(people_gt)},
    }
    if options.stereo_clock_differs:  # the stereo camera's own clock (absent by default: same bytes)
        people.update({
            "times_s": np.arange(options.capture_frames) / options.fps,
            "stereo_joints": scene.stereo_points[:, :, :len(COCO17)].astype(np.float32),
            "stereo_frame_index": np.arange(options.stereo_capture_frames, dtype=np.int64),
            "stereo_times_s": options.stereo_times_s(),
        })
    write_npz(files[3], **people)
    write_yaml(files[4], options.to_mapping(), "synth_options@1")
    return files


def _write_config(out: Path, scene: Scene) -> Path:
    options = scene.options
    recordings = {}
    for recording in RECORDINGS:
        recordings[recording] = {
            "kind": recording,
            "sources": [
                {"path": raw_path(recording, group, options), "grid": list(scene.layouts[group].grid),
                 "cameras": list(cams)}
                for group, cams in GROUPS.items()
            ],
        }
    board = {"type": options.board, "inner_corners": list(options.inner_corners),
             "square_size_m": options.square_size_m}
    if options.board == "charuco":
        board.update({"marker_size_m": options.marker_size_m, "aruco_dict": "DICT_4X4_50"})
    config = {
        "session_dir": "session",
        "board": board,
        "crop": {"recordings": recordings, "stereo_pairs": [list(STEREO_CAMERAS)]},
    }
    path = out / "posecap.yaml"
    write_bytes(path, dump_yaml_text(config).encode("utf-8"))
    return path
