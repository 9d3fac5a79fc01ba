"""The synthetic scene: everything a session holds, drawn deterministically from one seed.

:func:`build_scene` turns :class:`SynthOptions` into the rig, the recording layouts, the board
trajectories and the people's motion. Random draws happen in a fixed order from one generator,
so the same options always give the same scene.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from pipeline.synth.board import BoardPose, BoardSpec
from pipeline.synth.camera import CameraModel
from pipeline.synth.mosaic import MosaicLayout, quad_layout, side_by_side_layout
from pipeline.synth.people import PersonParams, people_points, person_points, sample_people
from pipeline.synth.rig import QUAD_CAMERAS, STEREO_CAMERAS, cameras_from_mapping, rig_to_mapping, sample_rig
from pipeline.synth.sweeps import extrinsic_sweep, intrinsic_sweep

RECORDINGS = ("intrinsics", "extrinsics", "capture")
CODECS = {"ffv1": ("FFV1", ".avi"), "mjpg": ("MJPG", ".avi"), "mp4v": ("mp4v", ".mp4")}


@dataclass(frozen=True)
class SynthOptions:
    """What to generate. Every field has a default; the defaults build ``calib_data/``."""

    seed: int = 0
    tile_size: tuple[int, int] = (560, 420)
    separator_px: int = 3
    odd_tiles: bool = True
    fps: float = 30.0
    intrinsics_frames: int = 30
    extrinsics_frames: int = 54
    capture_frames: int = 60
    people: int = 2
    board: str = "checkerboard"
    inner_corners: tuple[int, int] = (9, 6)
    square_size_m: float = 0.04
    marker_size_m: float = 0.03
    codec: str = "mp4v"
    supersample: int = 2
    noise_sigma: float = 1.5
    blur_sigma: float = 0.6
    # The stereo camera's own clock during the capture take (defaults: same start, same rate).
    stereo_offset_s: float = 0.0
    stereo_fps: float | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}; got {self.codec!r}")
        if self.board not in ("checkerboard", "charuco"):
            raise ValueError(f"board must be 'checkerboard' or 'charuco'; got {self.board!r}")
        if not 1 <= self.people <= 3:
            raise ValueError(f"people must be 1..3; got {self.people}")
        for name in ("intrinsics_frames", "extrinsics_frames", "capture_frames"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2; got {getattr(self, name)}")
        if self.codec == "mp4v" and (self.separator_px + (1 if self.odd_tiles else 0)) % 2:
            raise ValueError("mp4v needs even frame sizes: use an odd separator_px with odd_tiles, "
                             "else an even one")
        if self.codec == "mp4v" and self.tile_size[0] % 2:
            raise ValueError(f"mp4v needs an even tile width (side-by-side stereo); got {self.tile_size[0]}")
        if min(self.tile_size) < 64:
            raise ValueError(f"tile_size must be at least 64x64; got {self.tile_size}")
        if self.stereo_fps is not None and self.stereo_fps <= 0:
            raise ValueError(f"stereo_fps must be > 0; got {self.stereo_fps}")

    @property
    def board_spec(self) -> BoardSpec:
        return BoardSpec(self.board, tuple(self.inner_corners), self.square_size_m, self.marker_size_m)

    @property
    def video_ext(self) -> str:
        return CODECS[self.codec][1]

    def frames(self, recording: str, group: str = "quad") -> int:
        """Frames of a recording's raw file; the stereo capture runs on its own clock."""
        if recording == "capture" and group == "stereo":
            return self.stereo_capture_frames
        return int(getattr(self, f"{recording}_frames"))

    @property
    def stereo_capture_fps(self) -> float:
        return float(self.fps if self.stereo_fps is None else self.stereo_fps)

    @property
    def stereo_capture_frames(self) -> int:
        """Stereo capture frames: the quad's take length at the stereo frame rate."""
        if self.stereo_fps is None:
            return int(self.capture_frames)
        return max(2, int(round(self.capture_frames * self.stereo_fps / self.fps)))

    @property
    def stereo_clock_differs(self) -> bool:
        return self.stereo_offset_s != 0.0 or self.stereo_fps is not None

    def stereo_times_s(self) -> np.ndarray:
        """(T_s,) quad-clock time of each stereo capture frame: ``stereo_offset_s + k / stereo_fps``."""
        return self.stereo_offset_s + np.arange(self.stereo_capture_frames) / self.stereo_capture_fps

    def to_mapping(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if not self.stereo_clock_differs:  # keep the default options.yaml byte-identical
            del out["stereo_offset_s"], out["stereo_fps"]
        return out

    @classmethod
    def from_mapping(cls, data: dict) -> SynthOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"schema"}
        if unknown:
            raise ValueError(f"unknown synth options: {sorted(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**kw)


@dataclass
class Scene:
    """A drawn scene.

    Attributes:
        options: what it was built from.
        cameras: name -> ground-truth camera (cam0..cam3, stereo_l, stereo_r).
        layouts: ``"quad"`` / ``"stereo"`` -> recording layout.
        boards: recording (intrinsics, extrinsics) -> camera -> per-frame board pose.
        people: the people's bodies and paths.
        points: (T, P, len(POINTS), 3) body points during the capture, world metres.
        start_times: recording -> wall-clock start (for the burned-in timestamp).
        stereo_points: (T_s, P, len(POINTS), 3) body points at the stereo camera's capture frames
            (its own offset and rate); None when the stereo clock equals the quad's (use ``points``).
    """

    options: SynthOptions
    cameras: dict[str, CameraModel]
    layouts: dict[str, MosaicLayout]
    boards: dict[str, dict[str, list[BoardPose]]]
    people: list[PersonParams]
    points: np.ndarray
    start_times: dict[str, _dt.datetime] = field(default_factory=dict)
    stereo_points: np.ndarray | None = None

    def capture_points(self, camera: str) -> np.ndarray:
        """Body points of the capture take at ``camera``'s own frames."""
        if camera in STEREO_CAMERAS and self.stereo_points is not None:
            return self.stereo_points
        return self.points

    def camera_index(self, name: str) -> int:
        return list(self.cameras).index(name)


def build_scene(options: SynthOptions) -> Scene:
    """Draw the whole scene for ``options`` (deterministic for ``options.seed``)."""
    rng = np.random.default_rng(options.seed)
    w, h = options.tile_size
    quad = quad_layout(QUAD_CAMERAS, (w, h), options.separator_px, options.odd_tiles)
    stereo = side_by_side_layout(STEREO_CAMERAS, (w, h))
    quad_sizes = [quad.tile_size(c) for c in QUAD_CAMERAS]
    cams = sample_rig(rng, quad_sizes, (w, h))
    # Round-trip through the rig.yaml mapping so renders use exactly the written numbers.
    cameras = {c.name: c for c in cameras_from_mapping(rig_to_mapping(cams))}
    spec = options.board_spec
    n_int, n_ext = options.intrinsics_frames, options.extrinsics_frames
    intr: dict[str, list[BoardPose]] = {}
    for name in QUAD_CAMERAS:
        intr[name] = intrinsic_sweep(rng, cameras[name], spec, n_int)
    body = 0.5 * (cameras["stereo_l"].center_world + cameras["stereo_r"].center_world)
    stereo_poses = intrinsic_sweep(rng, cameras["stereo_l"], spec, n_int, center_world=body)
    intr["stereo_l"] = intr["stereo_r"] = stereo_poses
    groups = [("cam0", "cam1"), ("cam1", "cam2"), ("cam2", "cam3"), ("cam3", "cam0"), ("cam1", "stereo_l"),
              ("cam0", "cam1"), ("cam1", "cam2"), ("cam2", "cam3"), ("cam3", "cam0"), ("cam0", "stereo_l")]
    ext_poses = extrinsic_sweep(rng, cameras, spec, n_ext, groups)
    ext = {name: ext_poses for name in cameras}
    people = sample_people(rng, options.people)
    points = people_points(people, options.capture_frames, options.fps)
    base = _dt.datetime(2024, 3, 14, 9, 30, 0) + _dt.timedelta(seconds=int(rng.integers(0, 3600)))
    starts = {
        "intrinsics": base,
        "extrinsics": base + _dt.timedelta(seconds=95),
        "capture": base + _dt.timedelta(seconds=240),
    }
    stereo_points = None
    if options.stereo_clock_differs:
        times = options.stereo_times_s()
        stereo_points = np.stack([person_points(p, times) for p in people], axis=1)
    return Scene(options, cameras, {"quad": quad, "stereo": stereo}, {"intrinsics": intr, "extrinsics": ext},
                 people, points, starts, stereo_points)
