"""Board trajectories for the calibration recordings.

- Intrinsic sweeps: per camera (and one for the stereo camera, seen by both lenses), the board is
  held 0.5–1.1 m in front of the lens, visiting the image centre, edges and corners at varied
  tilts. Each quad camera has its own board (the sweeps of the four cameras share one file, as if
  recorded one after another and assembled).
- Extrinsic sweep: one board moves through the volume, each key pose turned towards a group of
  cameras (two neighbouring quad cameras, or a quad camera and the stereo camera), so several
  cameras see it at once.

Key poses every few frames are interpolated (position linearly, rotation by slerp), as a hand
moving the board would. About one key pose in seven is deliberately bad: partly out of view or
too oblique to detect.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from pipeline.synth.board import BoardPose, BoardSpec
from pipeline.synth.camera import CameraModel

KEY_EVERY = 3
REACH_M = (0.2, 0.7)
COVERAGE = ((0.5, 0.5), (0.22, 0.22), (0.78, 0.22), (0.78, 0.78), (0.22, 0.78),
            (0.5, 0.2), (0.8, 0.5), (0.5, 0.8), (0.2, 0.5))


def _facing_rotation(normal_into_board: np.ndarray, down_hint: np.ndarray) -> np.ndarray:
    """Board -> world rotation whose z axis is ``normal_into_board`` and y axis closest to ``down_hint``."""
    z = normal_into_board / np.linalg.norm(normal_into_board)
    y = down_hint - (down_hint @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=1)


def _tilt(R: np.ndarray, ax_deg: float, ay_deg: float, roll_deg: float) -> np.ndarray:
    """Rotate the board about its own x, y and z axes (degrees)."""
    local = Rotation.from_euler("xyz", [ax_deg, ay_deg, roll_deg], degrees=True).as_matrix()
    return R @ local


def _interpolate(keys: list[BoardPose], num_frames: int) -> list[BoardPose]:
    """Per-frame poses from key poses spaced ``KEY_EVERY`` frames apart."""
    key_t = np.arange(len(keys)) * KEY_EVERY
    rots = Rotation.from_matrix(np.stack([k.R for k in keys]))
    slerp = Slerp(key_t, rots)
    t = np.minimum(np.arange(num_frames), key_t[-1]).astype(float)
    Rs = slerp(t).as_matrix()
    origins = np.stack([k.origin for k in keys])
    out = []
    for i, ti in enumerate(t):
        j = min(int(ti // KEY_EVERY), len(keys) - 2)
        a = (ti - key_t[j]) / KEY_EVERY
        out.append(BoardPose(Rs[i], (1 - a) * origins[j] + a * origins[j + 1]))
    return out


def _num_keys(num_frames: int) -> int:
    return max(2, (num_frames - 1) // KEY_EVERY + 2)


def intrinsic_sweep(rng: np.random.Generator, camera: CameraModel, spec: BoardSpec,
                    num_frames: int, center_world: np.ndarray | None = None) -> list[BoardPose]:
    """Board poses for one camera's intrinsic sweep (``num_frames`` poses, board -> world).

    ``center_world`` overrides the point the board is held in front of (the stereo body centre).
    """
    w, h = camera.image_size
    cam_c = camera.center_world if center_world is None else np.asarray(center_world, float)
    keys = []
    for k in range(_num_keys(num_frames)):
        fx_, fy_ = COVERAGE[k % len(COVERAGE)]
        fx_ += rng.uniform(-0.05, 0.05)
        fy_ += rng.uniform(-0.05, 0.05)
        dist = rng.uniform(0.55, 1.1)
        bad = rng.random()
        tilt_max = 38.0
        if 0.0 <= bad < 0.08:  # partly out of view
            fx_, fy_ = rng.choice([0.0, 1.0]), rng.uniform(0.1, 0.9)
        elif bad < 0.15:  # too oblique
            tilt_max = 0.0
        uv = np.array([fx_ * (w - 1), fy_ * (h - 1)])
        ray_cam = np.linalg.solve(camera.K, [uv[0], uv[1], 1.0])
        ray_cam /= np.linalg.norm(ray_cam)
        ray_world = camera.R.T @ ray_cam
        center = cam_c + dist * ray_world
        R = _facing_rotation(ray_world, camera.R.T @ np.array([0.0, 1.0, 0.0]))
        if tilt_max == 0.0:
            steep = rng.choice([-1, 1]) * rng.uniform(72, 80)
            R = _tilt(R, steep, rng.uniform(-10, 10), rng.uniform(-10, 10))
        else:
            ax = rng.uniform(-tilt_max, tilt_max)
            R = _tilt(R, ax, rng.uniform(-tilt_max, tilt_max), rng.uniform(-15, 15))
        keys.append(BoardPose(R, center - R @ spec.center_m()))
    return _interpolate(keys, num_frames)


def extrinsic_sweep(rng: np.random.Generator, cameras: dict[str, CameraModel], spec: BoardSpec,
                    num_frames: int, groups: list[tuple[str, ...]]) -> list[BoardPose]:
    """Board poses for the synchronized extrinsic sweep through the volume.

    Each key pose picks the next camera group, places the board between the volume centre and
    the group, 0.8–1.6 m above the floor, and turns it towards the mean viewing direction of the
    group's cameras.
    """
    keys = []
    for k in range(_num_keys(num_frames)):
        group = groups[k % len(groups)]
        centers = np.stack([cameras[c].center_world for c in group])
        toward = centers.mean(axis=0)
        toward_xy = toward[:2] / np.linalg.norm(toward[:2])
        xy = toward_xy * rng.uniform(*REACH_M) + rng.uniform(-0.3, 0.3, 2)
        pos = np.array([*xy, rng.uniform(0.8, 1.6)])
        dirs = centers - pos
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        view = dirs.mean(axis=0)
        R = _facing_rotation(-view, np.array([0.0, 0.0, -1.0]))
        if rng.random() < 0.12:
            R = _tilt(R, rng.uniform(-15, 15), rng.choice([-1, 1]) * rng.uniform(65, 80), 0.0)
        else:
            R = _tilt(R, rng.uniform(-20, 20), rng.uniform(-12, 12), rng.uniform(-20, 20))
        keys.append(BoardPose(R, pos - R @ spec.center_m()))
    return _interpolate(keys, num_frames)
