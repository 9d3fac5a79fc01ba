"""Synthetic rigs, walking COCO-17 people and their noisy 2D keypoints, for the triangulation tests.

World frame: z up, metres, origin at the centre of a ~4 m capture volume on the floor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.artifacts import write_npz
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig
from pipeline.skeleton import COCO17

FPS = 30.0


def look_at(position: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R, t) for a camera at ``position`` looking at ``target`` (z up, no roll)."""
    fwd = target - position
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    return R, -R @ position


def make_rig(n_cams: int = 5, radius: float = 4.5, seed: int = 0, image_size=(1280, 720)) -> Rig:
    """``n_cams`` cameras on a ring around the volume at 1.6–2.6 m height, realistic K and distortion."""
    rng = np.random.default_rng(seed)
    w, h = image_size
    cams = []
    for i in range(n_cams):
        ang = 2 * np.pi * i / n_cams + rng.uniform(-0.15, 0.15)
        r = radius * rng.uniform(0.9, 1.1)
        pos = np.array([r * np.cos(ang), r * np.sin(ang), rng.uniform(1.6, 2.6)])
        R, t = look_at(pos, np.array([0.0, 0.0, 0.9]) + rng.normal(0, 0.2, 3))
        f = rng.uniform(850, 1000)
        K = np.array([[f, 0.0, w / 2 + rng.normal(0, 8)],
                      [0.0, f * rng.uniform(0.995, 1.005), h / 2 + rng.normal(0, 8)],
                      [0.0, 0.0, 1.0]])
        dist = np.array([rng.uniform(-0.25, -0.1), rng.uniform(0.02, 0.08), rng.normal(0, 1e-3),
                         rng.normal(0, 1e-3), rng.uniform(-0.02, 0.0)])
        cams.append(Camera(f"cam{i}", (w, h), K, dist, R, t))
    return Rig(tuple(cams), world="floor")


# Body-frame joint positions (x forward, y left, z up) at rest, metres.
_REST = {
    "nose": (0.10, 0.0, 1.62), "left_eye": (0.08, 0.035, 1.66), "right_eye": (0.08, -0.035, 1.66),
    "left_ear": (0.0, 0.075, 1.63), "right_ear": (0.0, -0.075, 1.63),
    "left_shoulder": (0.0, 0.19, 1.45), "right_shoulder": (0.0, -0.19, 1.45),
    "left_hip": (0.0, 0.11, 0.95), "right_hip": (0.0, -0.11, 0.95),
}  # fmt: skip
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.29, 0.26, 0.44, 0.42


def walking_person(n_frames: int, center: tuple[float, float], radius: float, phase: float,
                   speed: float = 1.0, direction: float = 1.0, fps: float = FPS) -> np.ndarray:
    """A person walking on a circle with swinging limbs: (T, 17, 3) world joints, metres.

    Bone lengths are constant; the walk cycle is ~1 Hz, so joints move smoothly at 30 fps.
    """
    t = np.arange(n_frames) / fps
    ang = phase + direction * speed * t / radius
    root = np.stack([center[0] + radius * np.cos(ang), center[1] + radius * np.sin(ang)], axis=-1)
    heading = ang + direction * np.pi / 2
    swing = 0.45 * np.sin(2 * np.pi * 0.9 * t + phase)
    bob = 0.02 * np.cos(4 * np.pi * 0.9 * t)
    body = np.zeros((n_frames, 17, 3))
    for name, pos in _REST.items():
        body[:, COCO17.index(name)] = pos
    body[..., 2] += bob[:, None]

    def limb(parent: np.ndarray, length: float, angle: np.ndarray) -> np.ndarray:
        # Swing in the sagittal (x, z) plane; angle 0 hangs straight down.
        return parent + length * np.stack([np.sin(angle), np.zeros_like(angle), -np.cos(angle)], axis=-1)

    for side, sign in (("left", 1.0), ("right", -1.0)):
        sh = body[:, COCO17.index(f"{side}_shoulder")]
        hip = body[:, COCO17.index(f"{side}_hip")]
        elbow = limb(sh, _UPPER_ARM, -sign * 0.6 * swing)
        wrist = limb(elbow, _FOREARM, -sign * 0.6 * swing + 0.35 + 0.2 * np.abs(swing))
        knee = limb(hip, _THIGH, sign * swing)
        lift = 0.3 * np.clip(np.sin(2 * np.pi * 0.9 * t + phase + sign), 0, 1)
        ankle = limb(knee, _SHIN, sign * swing - lift)
        body[:, COCO17.index(f"{side}_elbow")] = elbow
        body[:, COCO17.index(f"{side}_wrist")] = wrist
        body[:, COCO17.index(f"{side}_knee")] = knee
        body[:, COCO17.index(f"{side}_ankle")] = ankle
    c, s = np.cos(heading), np.sin(heading)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T, 2, 2)
    world = body.copy()
    world[..., :2] = np.einsum("tij,tkj->tki", rot, body[..., :2]) + root[:, None, :]
    return world


def crossing_people(n_frames: int, n_people: int = 3) -> np.ndarray:
    """``n_people`` walking on overlapping circles, passing each other 0.45–0.8 m apart: (T, P, 17, 3)."""
    specs = [((-0.5, 0.0), 1.1, 0.0, 1.0), ((0.5, 0.0), 1.1, 2.2, -1.0), ((0.0, 0.6), 1.0, 1.5, 1.0),
             ((0.0, -0.7), 0.9, 4.0, -1.0)]
    people = [walking_person(n_frames, c, r, ph, direction=d) for c, r, ph, d in specs[:n_people]]
    return np.stack(people, axis=1)


def observe(rig: Rig, joints: np.ndarray, *, noise_px: float = 2.0, miss_rate: float = 0.0,
            outlier_rate: float = 0.0, outlier_px: tuple[float, float] = (40.0, 250.0),
            swap_rate: float = 0.0, swap_camera: int = 0, person_miss_rate: float = 0.0,
            shuffle: bool = False, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Project ``joints`` (T, P, 17, 3) into every camera with noise, misses, outliers, swaps.

    Returns:
        keypoints (C, T, P, 17, 3) float32 ``[x, y, score]`` (NaN, NaN, 0 when missing), and
        ``truth`` with ``order`` (C, T, P): the true person index of each 2D slot (-1 = empty),
        ``outlier`` (C, T, P, 17) bool and ``swapped`` (C, T, P) bool.
    """
    rng = np.random.default_rng(seed)
    C = len(rig)
    T, P, J, _ = joints.shape
    uv = rig.project(joints)  # (C, T, P, J, 2)
    uv = uv + rng.normal(0.0, noise_px, uv.shape)
    score = rng.uniform(0.6, 1.0, uv.shape[:-1])
    w, h = rig.cameras[0].image_size
    inside = (uv[..., 0] > 0) & (uv[..., 0] < w - 1) & (uv[..., 1] > 0) & (uv[..., 1] < h - 1)
    outlier = (rng.random(uv.shape[:-1]) < outlier_rate) & inside
    mag = rng.uniform(*outlier_px, uv.shape[:-1])
    ang = rng.uniform(0, 2 * np.pi, uv.shape[:-1])
    uv = uv + outlier[..., None] * np.stack([mag * np.cos(ang), mag * np.sin(ang)], -1)
    score = np.where(outlier, rng.uniform(0.7, 1.0, score.shape), score)
    swapped = np.zeros((C, T, P), bool)
    if swap_rate > 0:
        swapped[swap_camera] = rng.random((T, P)) < swap_rate
        flip = list(COCO17.flip_indices)
        uv = np.where(swapped[..., None, None], uv[..., flip, :], uv)
        score = np.where(swapped[..., None], score[..., flip], score)
    missing = ~inside | (rng.random(uv.shape[:-1]) < miss_rate)
    missing |= (rng.random((C, T, P)) < person_miss_rate)[..., None]
    kp = np.concatenate([uv, score[..., None]], -1)
    kp[missing] = [np.nan, np.nan, 0.0]
    order = np.broadcast_to(np.arange(P), (C, T, P)).copy()
    if shuffle:
        order = np.argsort(rng.random((C, T, P)), axis=-1)
        kp = np.take_along_axis(kp, order[..., None, None], axis=2)
        outlier = np.take_along_axis(outlier, order[..., None], axis=2)
        swapped = np.take_along_axis(swapped, order, axis=2)
    empty = ~np.isfinite(kp[..., 0]).any(-1)
    order = np.where(empty, -1, order)
    return kp.astype(np.float32), {"order": order, "outlier": outlier, "swapped": swapped}


def write_session(root: Path, rig: Rig, keypoints: np.ndarray) -> None:
    """Write ``calib/rig.yaml`` and ``pose2d/<cam>.npz`` under ``root``."""
    rig.save(root / "calib" / "rig.yaml")
    T = keypoints.shape[1]
    for c, cam in enumerate(rig.cameras):
        write_npz(root / "pose2d" / f"{cam.name}.npz", keypoints=keypoints[c],
                  frame_index=np.arange(T, dtype=np.int64))


def mpjpe_mm(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-joint position error over joints both finite, millimetres."""
    err = np.linalg.norm(estimate - truth, axis=-1)
    return float(np.nanmean(err) * 1000.0)
