"""The synthetic rig: four cameras around the capture volume plus one side-by-side stereo camera.

World frame = the floor: origin at the centre of the capture volume, z up, metres. The four quad
cameras stand outside the corners of a ~4 m × 4 m volume at 1.5–2.5 m height and look at its
centre; the stereo camera (two lenses ~12 cm apart) stands at the middle of one side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.synth.camera import CameraModel, look_at

QUAD_CAMERAS = ("cam0", "cam1", "cam2", "cam3")
QUAD_HFOV_DEG = (54.0, 60.0)
STEREO_HFOV_DEG = (60.0, 66.0)
STEREO_CAMERAS = ("stereo_l", "stereo_r")


def sample_intrinsics(rng: np.random.Generator, image_size: tuple[int, int],
                      hfov_deg: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Draw a realistic ``K`` and OpenCV ``dist`` for an image of ``(width, height)`` pixels.

    Square-ish pixels (fy/fx within 1 %), principal point within 3 % of the centre,
    k1 in [-0.3, 0.1], |k2| <= 0.08, p1/p2 ~ 1e-3, k3 = 0.
    """
    w, h = image_size
    hfov = np.deg2rad(rng.uniform(*hfov_deg))
    fx = (w / 2.0) / np.tan(hfov / 2.0)
    fy = fx * rng.uniform(0.99, 1.01)
    cx = (w - 1) / 2.0 + rng.uniform(-0.03, 0.03) * w
    cy = (h - 1) / 2.0 + rng.uniform(-0.03, 0.03) * h
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    k1 = rng.uniform(-0.3, 0.1)
    k2 = rng.uniform(-0.02, 0.08) if k1 < -0.1 else rng.uniform(-0.03, 0.03)
    p1, p2 = rng.normal(0.0, 1e-3, size=2)
    dist = np.array([k1, k2, p1, p2, 0.0])
    return K, dist


def sample_rig(rng: np.random.Generator, quad_sizes: Sequence[tuple[int, int]],
               stereo_size: tuple[int, int], radius_m: float = 2.3,
               baseline_m: float = 0.12) -> list[CameraModel]:
    """Place and draw the six lenses.

    Args:
        rng: the session's random generator.
        quad_sizes: four ``(width, height)`` tile sizes, row-major (cam0..cam3).
        stereo_size: ``(width, height)`` of each stereo lens.
        radius_m: horizontal distance of the quad cameras from the volume centre.
        baseline_m: nominal stereo baseline.

    Returns:
        ``[cam0, cam1, cam2, cam3, stereo_l, stereo_r]``.
    """
    cams: list[CameraModel] = []
    for i, name in enumerate(QUAD_CAMERAS):
        az = np.deg2rad(45.0 + 90.0 * i + rng.uniform(-8.0, 8.0))
        r = radius_m * rng.uniform(0.95, 1.05)
        center = np.array([r * np.cos(az), r * np.sin(az), rng.uniform(1.5, 2.5)])
        target = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.8, 1.1)])
        R = look_at(center, target, roll_rad=np.deg2rad(rng.uniform(-2.0, 2.0)))
        K, dist = sample_intrinsics(rng, quad_sizes[i], QUAD_HFOV_DEG)
        cams.append(CameraModel(name, tuple(quad_sizes[i]), K, dist, R, -R @ center))
    # Stereo body between cam0 and cam1 directions (a free side of the volume), slightly farther out.
    az = np.deg2rad(90.0 + rng.uniform(-10.0, 10.0))
    body = np.array([3.2 * np.cos(az), 3.2 * np.sin(az), rng.uniform(1.4, 1.8)])
    target = np.array([0.0, 0.0, 0.9])
    R = look_at(body, target, roll_rad=np.deg2rad(rng.uniform(-1.5, 1.5)))
    baseline = baseline_m * rng.uniform(0.97, 1.03)
    # Small relative rotation between the two lenses (factory mounting error).
    rel = _small_rotation(rng, np.deg2rad(0.5))
    for name, sign, R_lens in (("stereo_l", -0.5, R), ("stereo_r", 0.5, rel @ R)):
        center = body + sign * baseline * R[0]
        K, dist = sample_intrinsics(rng, stereo_size, STEREO_HFOV_DEG)
        cams.append(CameraModel(name, tuple(stereo_size), K, dist, R_lens, -R_lens @ center))
    return cams


def _small_rotation(rng: np.random.Generator, max_angle_rad: float) -> np.ndarray:
    rvec = rng.uniform(-max_angle_rad, max_angle_rad, size=3)
    return cv2.Rodrigues(rvec)[0]


def rig_to_mapping(cameras: Sequence[CameraModel]) -> dict:
    """The ``calib/rig.yaml`` body (without ``schema``) for ground-truth cameras."""
    return {
        "units": "m",
        "world": "floor",
        "cameras": {
            cam.name: {
                "image_size": [int(cam.image_size[0]), int(cam.image_size[1])],
                "K": np.round(cam.K, 9).tolist(),
                "dist": np.round(cam.dist, 12).tolist(),
                "R": np.round(cam.R, 12).tolist(),
                "t": np.round(cam.t, 12).tolist(),
                "reprojection_rms_px": 0.0,
            }
            for cam in cameras
        },
    }


def write_rig(path: str | os.PathLike, cameras: Sequence[CameraModel]) -> None:
    """Write ground-truth cameras as a ``posecap/rig@1`` YAML (DESIGN.md format, world = floor)."""
    write_yaml(path, rig_to_mapping(cameras), "rig@1")


def read_rig(path: str | os.PathLike) -> list[CameraModel]:
    """Read a ``posecap/rig@1`` YAML into camera models (in file order)."""
    return cameras_from_mapping(read_yaml(path, "rig@1"))


def cameras_from_mapping(data: dict) -> list[CameraModel]:
    """Camera models from a rig mapping (as :func:`rig_to_mapping` returns or rig.yaml holds)."""
    cams = []
    for name, c in data["cameras"].items():
        cams.append(CameraModel(
            name=name, image_size=(int(c["image_size"][0]), int(c["image_size"][1])),
            K=np.asarray(c["K"], float), dist=np.asarray(c["dist"], float),
            R=np.asarray(c["R"], float), t=np.asarray(c["t"], float)))
    return cams
