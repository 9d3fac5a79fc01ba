"""Fast undistortion of many pixels through a per-camera lookup table plus one Newton step.

Undistortion has no closed form; OpenCV iterates a fixed point per point (``undistortPoints``,
~180 ns a point here), and that dominated batched triangulation. The inverse map is smooth, so a
table of exact undistorted normalized coordinates on a pixel grid (every ``step`` pixels over the
image plus a margin), bilinearly interpolated, starts within ~1e-7 of the answer; the Newton
iteration of :func:`pipeline.geometry.camera.undistort` then lands on it to ~1e-13 (normalized
units) in one or two steps. The result is the same as :func:`~pipeline.geometry.camera.undistort_pixels`
to within that tolerance. Pixels outside the table (far outside the image) take the exact path.
"""

from __future__ import annotations

import numpy as np

from pipeline.geometry.camera import pad_dist, undistort, undistort_pixels

__all__ = ["UndistortTable"]


class UndistortTable:
    """The undistorted normalized coordinates of one camera on a pixel grid.

    Args:
        K: (3, 3) intrinsics. dist: (n,) OpenCV distortion, n in {4, 5, 8}.
        image_size: (width, height) in pixels.
        step: grid spacing in pixels. margin: fraction of the image size the grid extends
            beyond each edge (keypoints a little outside the frame still take the fast path).
    """

    def __init__(self, K: np.ndarray, dist: np.ndarray, image_size: tuple[int, int], step: float = 4.0,
                 margin: float = 0.15) -> None:
        self.K = np.asarray(K, dtype=np.float64)
        self.dist = np.asarray(dist, dtype=np.float64).reshape(-1)
        self.dist8 = pad_dist(self.dist)
        w, h = image_size
        self.step = float(step)
        self.origin = np.array([-margin * w, -margin * h])
        nx = int(np.ceil((1 + 2 * margin) * w / step)) + 1
        ny = int(np.ceil((1 + 2 * margin) * h / step)) + 1
        gx = self.origin[0] + self.step * np.arange(nx)
        gy = self.origin[1] + self.step * np.arange(ny)
        grid = np.stack(np.meshgrid(gx, gy), axis=-1)  # (ny, nx, 2) pixels
        self.table = undistort_pixels(grid, self.K, self.dist).reshape(-1, 2)  # (ny * nx, 2) normalized
        self.shape = (ny, nx)

    def __call__(self, uv_px: np.ndarray) -> np.ndarray:
        """Distorted pixels (..., 2) -> undistorted normalized coordinates (..., 2). NaN in, NaN out."""
        uv = np.asarray(uv_px, dtype=np.float64)
        flat = uv.reshape(-1, 2)
        ny, nx = self.shape
        g = (flat - self.origin) / self.step  # grid coordinates
        with np.errstate(invalid="ignore"):
            inside = (g[:, 0] >= 0) & (g[:, 0] < nx - 1) & (g[:, 1] >= 0) & (g[:, 1] < ny - 1)
        out = np.full(flat.shape, np.nan)
        if inside.all():
            pts, gi = flat, g
        else:
            pts, gi = flat[inside], g[inside]
        i0 = np.floor(gi).astype(np.intp)
        f = gi - i0
        idx = i0[:, 1] * nx + i0[:, 0]
        fx, fy = f[:, :1], f[:, 1:]
        t = self.table
        start = ((t[idx] * (1 - fx) + t[idx + 1] * fx) * (1 - fy)
                 + (t[idx + nx] * (1 - fx) + t[idx + nx + 1] * fx) * fy)
        K = self.K
        yd = (pts[:, 1] - K[1, 2]) / K[1, 1]
        xd = (pts[:, 0] - K[0, 2] - K[0, 1] * yd) / K[0, 0]
        out[inside] = undistort(np.stack([xd, yd], axis=-1), self.dist8, start=start)
        outside = ~inside & np.isfinite(flat).all(-1)
        if outside.any():
            out[outside] = undistort_pixels(flat[outside], K, self.dist)
        return out.reshape(uv.shape)
