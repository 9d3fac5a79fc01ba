"""A pinhole camera with OpenCV lens distortion: projection, its Jacobian, and undistortion.

Conventions (``shared/DESIGN.md``): world to camera ``X_cam = R @ X_world + t`` in metres; pixel
coordinates as OpenCV (x right, y down, integer values at pixel centres); ``dist`` in OpenCV order
``[k1, k2, p1, p2, k3, k4, k5, k6]`` (4, 5 or 8 values; missing ones are zero).

The distortion model, for normalized coordinates ``(x, y) = (X_cam / Z_cam, Y_cam / Z_cam)``::

    r2 = x² + y²
    radial = (1 + k1 r2 + k2 r2² + k3 r2³) / (1 + k4 r2 + k5 r2² + k6 r2³)
    x_d = x radial + 2 p1 x y + p2 (r2 + 2 x²)
    y_d = y radial + p1 (r2 + 2 y²) + 2 p2 x y
    u = fx x_d + s y_d + cx,   v = fy y_d + cy

Every function works over any leading batch dimensions; the distortion functions broadcast
their parameter arrays (``(..., 8)``) against the points, so one call can serve many cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_DEPTH_M = 1e-3
"""Points closer to the camera plane than this (or behind it) project to NaN."""

TABLE_MIN_POINTS = 20_000
"""From this many points on, :meth:`Camera.undistort_points` builds and uses a lookup table."""


def _check_last(arr: np.ndarray, size: int, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}); got {arr.shape}")
    return arr


def pad_dist(dist: np.ndarray) -> np.ndarray:
    """Pad OpenCV distortion coefficients (4, 5 or 8 values) to 8: ``(..., n) -> (..., 8)``."""
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[-1]
    if n not in (4, 5, 8):
        raise ValueError(f"dist must hold 4, 5 or 8 OpenCV coefficients; got {n}")
    pad = [(0, 0)] * (dist.ndim - 1) + [(0, 8 - n)]
    return np.pad(dist, pad)


def distort(xy: np.ndarray, dist8: np.ndarray) -> np.ndarray:
    """Apply lens distortion to normalized coordinates.

    Args:
        xy: (..., 2) undistorted normalized coordinates.
        dist8: (..., 8) coefficients ``[k1, k2, p1, p2, k3, k4, k5, k6]``, broadcast against ``xy``.

    Returns:
        (..., 2) distorted normalized coordinates.
    """
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3, k4, k5, k6 = np.moveaxis(np.asarray(dist8), -1, 0)
    r2 = x * x + y * y
    num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = num / den
    xy2 = 2.0 * x * y
    xd = x * radial + p1 * xy2 + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + p2 * xy2
    return np.stack([xd, yd], axis=-1)


def distort_jacobian(xy: np.ndarray, dist8: np.ndarray) -> np.ndarray:
    """Jacobian of :func:`distort` with respect to ``xy``: (..., 2) -> (..., 2, 2).

    ``J[..., i, j] = d distorted_i / d xy_j``.
    """
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3, k4, k5, k6 = np.moveaxis(np.asarray(dist8), -1, 0)
    r2 = x * x + y * y
    num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
    dnum = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # d num / d r2
    dden = k4 + r2 * (2.0 * k5 + 3.0 * k6 * r2)
    radial = num / den
    drad = (dnum * den - num * dden) / (den * den)  # d radial / d r2
    # d r2 / dx = 2x, d r2 / dy = 2y
    dxd_dx = radial + x * drad * 2.0 * x + 2.0 * p1 * y + p2 * 6.0 * x
    dxd_dy = x * drad * 2.0 * y + 2.0 * p1 * x + p2 * 2.0 * y
    dyd_dx = y * drad * 2.0 * x + p1 * 2.0 * x + 2.0 * p2 * y
    dyd_dy = radial + y * drad * 2.0 * y + p1 * 6.0 * y + 2.0 * p2 * x
    row0 = np.stack([dxd_dx, dxd_dy], axis=-1)
    row1 = np.stack([dyd_dx, dyd_dy], axis=-1)
    return np.stack([row0, row1], axis=-2)


def undistort(xy_d: np.ndarray, dist8: np.ndarray, iterations: int = 8, tol: float = 1e-13,
              start: np.ndarray | None = None) -> np.ndarray:
    """Invert :func:`distort`: distorted normalized (..., 2) -> undistorted normalized (..., 2).

    Three fixed-point steps (as OpenCV's ``undistortPoints``) give a start inside the basin of
    convergence; Newton steps with the analytic 2×2 Jacobian then converge quadratically, stopping
    once every residual is below ``tol`` (normalized units). NaN in, NaN out. Precondition: the
    distortion is invertible over the image (true for real lenses). ``start``, an initial guess
    (..., 2), replaces the fixed-point steps.
    """
    xy_d = np.asarray(xy_d, dtype=np.float64)
    dist8 = np.asarray(dist8, dtype=np.float64)
    k1, k2, p1, p2, k3, k4, k5, k6 = np.moveaxis(dist8, -1, 0)
    xy = xy_d.copy() if start is None else np.asarray(start, dtype=np.float64)
    for _ in range(3 if start is None else 0):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        icdist = (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)))
        dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        xy = np.stack([(xy_d[..., 0] - dx) * icdist, (xy_d[..., 1] - dy) * icdist], axis=-1)
    for _ in range(iterations):
        res = distort(xy, dist8) - xy_d
        if not (np.abs(res) > tol).any():  # NaN compares False: missing points never block
            break
        jac = distort_jacobian(xy, dist8)
        a, b, c, d = jac[..., 0, 0], jac[..., 0, 1], jac[..., 1, 0], jac[..., 1, 1]
        det = a * d - b * c
        with np.errstate(divide="ignore", invalid="ignore"):
            step_x = (d * res[..., 0] - b * res[..., 1]) / det
            step_y = (-c * res[..., 0] + a * res[..., 1]) / det
        xy = xy - np.stack([step_x, step_y], axis=-1)
    return xy


def cam_to_pixels(points_cam: np.ndarray, K: np.ndarray, dist8: np.ndarray) -> np.ndarray:
    """Project camera-frame points (..., 3) to distorted pixels (..., 2).

    ``K`` (..., 3, 3) and ``dist8`` (..., 8) broadcast against the points' batch dims.
    Points with ``Z <= MIN_DEPTH_M`` give NaN.
    """
    z = points_cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        z_safe = np.where(z > MIN_DEPTH_M, z, np.nan)
        xy = points_cam[..., :2] / z_safe[..., None]
    xyd = distort(xy, dist8)
    K = np.asarray(K)
    u = K[..., 0, 0] * xyd[..., 0] + K[..., 0, 1] * xyd[..., 1] + K[..., 0, 2]
    v = K[..., 1, 1] * xyd[..., 1] + K[..., 1, 2]
    return np.stack([u, v], axis=-1)


def pixels_to_normalized(uv_px: np.ndarray, K: np.ndarray, dist8: np.ndarray) -> np.ndarray:
    """Distorted pixels (..., 2) -> undistorted normalized coordinates (..., 2).

    ``K`` (..., 3, 3) and ``dist8`` (..., 8) broadcast against the points' batch dims.
    """
    K = np.asarray(K)
    yd = (uv_px[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    xd = (uv_px[..., 0] - K[..., 0, 2] - K[..., 0, 1] * yd) / K[..., 0, 0]
    return undistort(np.stack([xd, yd], axis=-1), dist8)


_CV_CRITERIA = (cv2.TERM_CRITERIA_COUNT, 10, 0.0)


def undistort_pixels(uv_px: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """One camera's distorted pixels (..., 2) -> undistorted normalized (..., 2), fast path.

    Ten fixed-point steps of OpenCV's ``undistortPoints`` (C++) start the Newton iteration of
    :func:`undistort`, which then converges to ~1e-13 in a step or two even where strong barrel
    distortion leaves the fixed point pixels off at the image corners (OpenCV's default 5 steps
    leave 1–10 px there for k1 = -0.25 … -0.35). With skew in ``K``, which OpenCV ignores, the
    pure-numpy :func:`pixels_to_normalized` is used. NaN in, NaN out.
    """
    uv_px = np.asarray(uv_px, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    dist8 = pad_dist(dist)
    if K[0, 1] != 0.0 or uv_px.size == 0:
        return pixels_to_normalized(uv_px, K, dist8)
    flat = np.ascontiguousarray(uv_px.reshape(-1, 1, 2))
    start = cv2.undistortPoints(flat, K, np.asarray(dist, dtype=np.float64), None, None, None, _CV_CRITERIA)
    xy_d = np.stack([(flat[:, 0, 0] - K[0, 2]) / K[0, 0], (flat[:, 0, 1] - K[1, 2]) / K[1, 1]], axis=-1)
    return undistort(xy_d, dist8, start=start[:, 0]).reshape(uv_px.shape)


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated camera.

    Attributes:
        name: camera name as in ``calib/rig.yaml``.
        image_size: ``(width, height)`` in pixels.
        K: (3, 3) intrinsic matrix (upper triangular, ``K[2] = [0, 0, 1]``).
        dist: (n,) OpenCV distortion, n in {4, 5, 8}.
        R: (3, 3) world -> camera rotation.
        t: (3,) world -> camera translation, metres.
    """

    name: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        for key, shape in (("K", (3, 3)), ("R", (3, 3)), ("t", (3,))):
            arr = np.asarray(getattr(self, key), dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"camera {self.name}: {key} must have shape {shape}; got {arr.shape}")
            object.__setattr__(self, key, arr)
        object.__setattr__(self, "dist", np.asarray(self.dist, dtype=np.float64).reshape(-1))
        pad_dist(self.dist)  # validates the length
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    @property
    def dist8(self) -> np.ndarray:
        """(8,) distortion padded with zeros."""
        return pad_dist(self.dist)

    @property
    def center_world(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return -self.R.T @ self.t

    @property
    def projection_normalized(self) -> np.ndarray:
        """(3, 4) ``[R | t]``: the projection to undistorted normalized coordinates."""
        return np.concatenate([self.R, self.t[:, None]], axis=1)

    @property
    def focal_px(self) -> float:
        """Mean focal length in pixels (converts normalized distances to pixels)."""
        return float(0.5 * (self.K[0, 0] + self.K[1, 1]))

    def world_to_cam(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera-frame points, metres."""
        points_world = _check_last(points_world, 3, "points_world")
        return points_world @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """Project (..., 3) world points (m) to (..., 2) distorted pixels.

        NaN in, NaN out; points at or behind the camera plane give NaN.
        """
        return cam_to_pixels(self.world_to_cam(points_world), self.K, self.dist8)

    def project_jacobian(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project and differentiate: (..., 3) -> uv (..., 2) px and d uv / d X (..., 2, 3) px/m."""
        pc = self.world_to_cam(points_world)
        z = np.where(pc[..., 2] > MIN_DEPTH_M, pc[..., 2], np.nan)
        xy = pc[..., :2] / z[..., None]
        jd = distort_jacobian(xy, self.dist8)  # (..., 2, 2)
        kk = self.K[:2, :2]  # d uv / d xy_d
        # d xy / d pc: [[1/z, 0, -x/z], [0, 1/z, -y/z]]
        inv_z = 1.0 / z
        zeros = np.zeros_like(z)
        dxy_dpc = np.stack(
            [
                np.stack([inv_z, zeros, -xy[..., 0] * inv_z], axis=-1),
                np.stack([zeros, inv_z, -xy[..., 1] * inv_z], axis=-1),
            ],
            axis=-2,
        )
        jac = kk @ jd @ dxy_dpc @ self.R
        return cam_to_pixels(pc, self.K, self.dist8), jac

    def undistort_points(self, uv_px: np.ndarray) -> np.ndarray:
        """(..., 2) distorted pixels -> (..., 2) undistorted normalized coordinates. NaN propagates.

        Batches of more than ``TABLE_MIN_POINTS`` go through the camera's cached
        :class:`~pipeline.geometry.undistort_table.UndistortTable` (same result, several times faster).
        """
        uv_px = _check_last(uv_px, 2, "uv_px")
        if uv_px.size // 2 < TABLE_MIN_POINTS:
            return undistort_pixels(uv_px, self.K, self.dist)
        table = self.__dict__.get("_undistort_table")
        if table is None:
            from pipeline.geometry.undistort_table import UndistortTable

            table = UndistortTable(self.K, self.dist, self.image_size)
            self.__dict__["_undistort_table"] = table  # a cache: K and dist never change (frozen)
        return table(uv_px)

    def in_image(self, uv_px: np.ndarray) -> np.ndarray:
        """(..., 2) pixels -> (...) bool: inside the image."""
        w, h = self.image_size
        with np.errstate(invalid="ignore"):
            return (
                (uv_px[..., 0] >= -0.5) & (uv_px[..., 0] <= w - 0.5)
                & (uv_px[..., 1] >= -0.5) & (uv_px[..., 1] <= h - 0.5)
            )
