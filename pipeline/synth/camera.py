"""A pinhole camera with OpenCV lens distortion: projection and per-pixel viewing rays.

Conventions (``shared/DESIGN.md``): world to camera ``X_cam = R @ X_world + t`` in metres; pixel
coordinates as OpenCV (x right, y down, integer values at pixel centres); ``dist`` in OpenCV order
``[k1, k2, p1, p2, k3]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.geometry.camera import cam_to_pixels, pad_dist, undistort_pixels


@dataclass(frozen=True)
class CameraModel:
    """One lens of the synthetic rig.

    Attributes:
        name: camera name (``cam0`` … ``stereo_r``).
        image_size: ``(width, height)`` in pixels.
        K: (3, 3) intrinsic matrix.
        dist: (5,) OpenCV distortion ``[k1, k2, p1, p2, k3]``.
        R: (3, 3) world -> camera rotation.
        t: (3,) world -> camera translation, metres.
    """

    name: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray

    @property
    def center_world(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return -self.R.T @ self.t

    def world_to_cam(self, points_world: np.ndarray) -> np.ndarray:
        """``(..., 3)`` world points -> ``(..., 3)`` camera-frame points (metres)."""
        points_world = _check_points(points_world, "points_world")
        return points_world @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """Project ``(..., 3)`` world points to ``(..., 2)`` distorted pixels.

        Points at or behind the camera plane (z <= 1 mm) give NaN.
        """
        return distort_project(self.world_to_cam(points_world), self.K, self.dist)

    def in_image(self, uv_px: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """``(..., 2)`` pixels -> ``(...)`` bool: inside the image by at least ``margin`` px."""
        w, h = self.image_size
        x, y = uv_px[..., 0], uv_px[..., 1]
        with np.errstate(invalid="ignore"):
            inside_x = (x >= -0.5 + margin) & (x <= w - 0.5 - margin)
            return inside_x & (y >= -0.5 + margin) & (y <= h - 0.5 - margin)

    def pixel_rays_cam(self, supersample: int = 1) -> np.ndarray:
        """Unit viewing rays in the camera frame for a grid of sub-pixel samples.

        Sample ``(i, j)`` of pixel ``(x, y)`` sits at ``x + (i + 0.5) / s - 0.5`` (likewise y), so
        averaging each ``s × s`` block gives a box-filtered pixel centred on the pixel centre.

        Returns:
            (H * s, W * s, 3) float64 unit vectors (z > 0), distortion removed.
        """
        w, h = self.image_size
        s = int(supersample)
        offs = (np.arange(s) + 0.5) / s - 0.5
        xs = (np.arange(w)[:, None] + offs[None, :]).reshape(-1)
        ys = (np.arange(h)[:, None] + offs[None, :]).reshape(-1)
        gx, gy = np.meshgrid(xs, ys)
        xy = undistort_pixels(np.stack([gx, gy], axis=-1), self.K, self.dist)
        rays = np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)

    def pixel_rays_world(self, supersample: int = 1) -> np.ndarray:
        """Like :meth:`pixel_rays_cam` but rotated into the world frame: (H*s, W*s, 3)."""
        return self.pixel_rays_cam(supersample) @ self.R


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3); got {arr.shape}")
    return arr


def distort_project(points_cam: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Project ``(..., 3)`` camera-frame points to ``(..., 2)`` distorted pixels (NaN behind the camera).

    The lens model is :mod:`pipeline.geometry.camera`'s (OpenCV's), shared with the rest of posecap.
    """
    return cam_to_pixels(_check_points(points_cam, "points_cam"), np.asarray(K, dtype=np.float64), pad_dist(dist))


def look_at(center_world: np.ndarray, target_world: np.ndarray, roll_rad: float = 0.0) -> np.ndarray:
    """World -> camera rotation for a camera at ``center_world`` looking at ``target_world``.

    World z is up; the camera's y axis points down in the image, its z axis along the view.
    """
    z = np.asarray(target_world, float) - np.asarray(center_world, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: view direction is vertical; the camera roll is undefined")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    if roll_rad:
        c, s = np.cos(roll_rad), np.sin(roll_rad)
        R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    return R
