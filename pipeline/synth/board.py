"""Calibration boards: a high-resolution texture, its ground-truth corners, and ray-cast rendering.

Board frame: origin at the first inner corner, x along the ``columns`` inner corners, y along the
rows, z into the board (away from a viewer who sees the printed side). Inner corner ``(c, r)`` sits
at ``(c * square, r * square, 0)`` and has index ``r * columns + c`` — the usual OpenCV object
points. The printed side is the one a ray hits with ``dot(ray, z_board) > 0``.

Rendering intersects every (undistorted) pixel ray with the board plane and samples a mip-mapped
texture bilinearly (trilinear across levels), so the rendered board carries the lens distortion
exactly and does not alias when far away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TEXELS_PER_SQUARE = 64
MARGIN_SQUARES = 0.75
MIP_LEVELS = 5
BACK_SHADE = 0.55


@dataclass(frozen=True)
class BoardSpec:
    """A board: ``inner_corners = (columns, rows)``, square size, and its kind."""

    kind: str = "checkerboard"  # checkerboard | charuco
    inner_corners: tuple[int, int] = (9, 6)
    square_size_m: float = 0.04
    marker_size_m: float = 0.03
    aruco_dict: str = "DICT_4X4_50"

    def object_points(self) -> np.ndarray:
        """(N, 3) inner-corner positions in the board frame, metres, OpenCV order."""
        cols, rows = self.inner_corners
        grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float64)
        return np.concatenate([grid * self.square_size_m, np.zeros((len(grid), 1))], axis=1)

    def extent_m(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the physical board (squares plus white margin), board frame."""
        cols, rows = self.inner_corners
        sq = self.square_size_m
        pad = (1.0 + MARGIN_SQUARES) * sq
        return (-pad, -pad, (cols - 1) * sq + pad, (rows - 1) * sq + pad)

    def center_m(self) -> np.ndarray:
        """(3,) centre of the inner-corner grid in the board frame."""
        cols, rows = self.inner_corners
        return np.array([(cols - 1) / 2.0, (rows - 1) / 2.0, 0.0]) * self.square_size_m


def board_texture(spec: BoardSpec) -> np.ndarray:
    """Full-resolution float32 texture in [0, 1] (1 = white), ``TEXELS_PER_SQUARE`` per square."""
    cols, rows = spec.inner_corners
    n = TEXELS_PER_SQUARE
    margin = int(round(MARGIN_SQUARES * n))
    sq_x, sq_y = cols + 1, rows + 1
    if spec.kind == "checkerboard":
        iy, ix = np.mgrid[0:sq_y * n, 0:sq_x * n] // n
        inner = np.where((ix + iy) % 2 == 0, 0.0, 1.0)
    elif spec.kind == "charuco":
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.aruco_dict))
        board = cv2.aruco.CharucoBoard((sq_x, sq_y), spec.square_size_m, spec.marker_size_m, dictionary)
        inner = board.generateImage((sq_x * n, sq_y * n), marginSize=0, borderBits=1).astype(np.float64)
        inner /= 255.0
        inner = (inner > 0.5).astype(np.float64)
    else:
        raise ValueError(f"board kind must be 'checkerboard' or 'charuco'; got {spec.kind!r}")
    tex = np.ones((sq_y * n + 2 * margin, sq_x * n + 2 * margin), np.float32)
    tex[margin:margin + sq_y * n, margin:margin + sq_x * n] = inner
    return tex


def texture_pyramid(tex: np.ndarray) -> list[np.ndarray]:
    """Mip levels by exact 2× area averaging (level k has ``TEXELS_PER_SQUARE / 2**k`` per square)."""
    levels = [tex]
    for _ in range(MIP_LEVELS - 1):
        h, w = levels[-1].shape
        levels.append(cv2.resize(levels[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return levels


@dataclass(frozen=True)
class BoardPose:
    """Board -> world: ``X_world = R @ X_board + origin`` (R (3, 3), origin (3,) metres)."""

    R: np.ndarray
    origin: np.ndarray

    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous board -> world transform."""
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = self.origin
        return m


def corners_world(spec: BoardSpec, pose: BoardPose) -> np.ndarray:
    """(N, 3) inner corners in world coordinates."""
    return spec.object_points() @ pose.R.T + pose.origin


@dataclass
class BoardRenderer:
    """Ray-casts one board texture into images; build once per board spec."""

    spec: BoardSpec
    levels: list[np.ndarray]

    @classmethod
    def create(cls, spec: BoardSpec) -> BoardRenderer:
        return cls(spec, texture_pyramid(board_texture(spec)))

    def render(self, rays_world: np.ndarray, center_world: np.ndarray,
               pose: BoardPose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Intersect rays with the board and sample its texture.

        Args:
            rays_world: (H, W, 3) unit ray directions in the world frame (one per sample).
            center_world: (3,) the camera centre.
            pose: the board pose.

        Returns:
            ``(value, hit, depth)``: (H, W) float32 albedo in [0, 1] (back side uniform grey),
            (H, W) bool where a ray hits the board, (H, W) float32 distance along the ray (inf on miss).
        """
        n = pose.R[:, 2]
        denom = rays_world @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = ((pose.origin - center_world) @ n) / denom
        p_rel = center_world - pose.origin
        # Board-plane coordinates of the hit point: R^T (C + t d - o).
        local_x = (p_rel @ pose.R[:, 0]) + depth * (rays_world @ pose.R[:, 0])
        local_y = (p_rel @ pose.R[:, 1]) + depth * (rays_world @ pose.R[:, 1])
        x0, y0, x1, y1 = self.spec.extent_m()
        on_board = (local_x >= x0) & (local_x <= x1) & (local_y >= y0) & (local_y <= y1)
        hit = (depth > 0) & np.isfinite(depth) & on_board
        texel = self.spec.square_size_m / TEXELS_PER_SQUARE
        u = ((local_x - x0) / texel - 0.5).astype(np.float32)
        v = ((local_y - y0) / texel - 0.5).astype(np.float32)
        u = np.where(hit, u, -10.0).astype(np.float32)
        v = np.where(hit, v, -10.0).astype(np.float32)
        value = self._sample_mip(u, v)
        front = denom > 0
        value = np.where(front, value, BACK_SHADE).astype(np.float32)
        value = np.where(hit, value, 0.0).astype(np.float32)
        depth = np.where(hit, depth, np.inf).astype(np.float32)
        return value, hit, depth

    def _sample_mip(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Trilinear lookup: level from the texel footprint of one sample (finite differences)."""
        du = np.maximum(np.abs(np.gradient(u, axis=1)), np.abs(np.gradient(u, axis=0)))
        dv = np.maximum(np.abs(np.gradient(v, axis=1)), np.abs(np.gradient(v, axis=0)))
        foot = np.clip(np.maximum(du, dv), 1.0, 2.0 ** (len(self.levels) - 1))
        lod = np.log2(foot)
        lo = np.floor(lod).astype(np.int32)
        frac = (lod - lo).astype(np.float32)
        out = np.zeros(u.shape, np.float32)
        for k in range(len(self.levels)):
            use_lo = lo == k
            use_hi = (lo + 1 == k) & (frac > 0)
            if not (use_lo.any() or use_hi.any()):
                continue
            scale = 2.0 ** k
            # Texel centres: level-k coordinate = (level-0 coordinate + 0.5) / 2**k - 0.5.
            uk = ((u + 0.5) / scale - 0.5).astype(np.float32)
            vk = ((v + 0.5) / scale - 0.5).astype(np.float32)
            sample = cv2.remap(self.levels[k], uk, vk, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out += np.where(use_lo, 1.0 - frac, 0.0) * sample + np.where(use_hi, frac, 0.0) * sample
        return out
