"""Render calibration boards through a known camera, for tests and benchmarks.

Each output pixel is supersampled: the sample positions are undistorted to rays (OpenCV's
iterative undistortion, run to convergence), the rays are intersected with the board plane, and
the board texture is sampled there with ``cv2.remap``; the supersampled image is then averaged
down (``INTER_AREA``), so pixel centres sit at integer coordinates as in OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.calibration.board import BoardConfig, charuco_board, object_points

UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-14)  # converged to 1e-12 px


@dataclass
class TrueCamera:
    """Ground-truth camera: K (3, 3), dist (OpenCV order; 4 fisheye coefficients for 'fisheye')."""

    K: np.ndarray
    dist: np.ndarray
    size: tuple[int, int]  # (width, height) px
    model: str = "pinhole"  # pinhole | fisheye
    _rays: dict = field(default_factory=dict, repr=False)

    def undistort(self, uv: np.ndarray) -> np.ndarray:
        """Distorted pixels (M, 2) -> normalised image coordinates (M, 2)."""
        pts = np.ascontiguousarray(uv, np.float64).reshape(-1, 1, 2)
        if self.model == "fisheye":
            out = cv2.fisheye.undistortPoints(pts, self.K, self.dist, criteria=UNDISTORT_CRITERIA)
        else:
            out = cv2.undistortPoints(pts, self.K, self.dist, criteria=UNDISTORT_CRITERIA)
        return out.reshape(-1, 2)

    def project(self, points_board: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
        """Board points (M, 3) m -> distorted pixels (M, 2)."""
        pts = np.ascontiguousarray(points_board, np.float64).reshape(-1, 1, 3)
        if self.model == "fisheye":
            uv, _ = cv2.fisheye.projectPoints(
                pts, rvec.reshape(1, 1, 3), tvec.reshape(1, 1, 3), self.K, self.dist
            )
        else:
            uv, _ = cv2.projectPoints(pts, rvec, tvec, self.K, self.dist)
        return uv.reshape(-1, 2)

    def rays(self, ss: int) -> np.ndarray:
        """Normalised rays (H*ss, W*ss, 3) of the supersample positions (cached)."""
        if ss not in self._rays:
            w, h = self.size
            u = (np.arange(w * ss) + 0.5) / ss - 0.5
            v = (np.arange(h * ss) + 0.5) / ss - 0.5
            uu, vv = np.meshgrid(u, v)
            xy = self.undistort(np.stack([uu.ravel(), vv.ravel()], axis=1))
            self._rays[ss] = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1).reshape(
                h * ss, w * ss, 3
            )
        return self._rays[ss]


def board_texture(board: BoardConfig, px_per_square: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The printed board with a one-square white border, as float32 (H, W) in [0, 1].

    Returns the texture and ``origin`` (2,): board-frame metres of the texture's outer corner.
    """
    s, p = board.square_size_m, px_per_square
    nx, ny = board.cols + 1, board.rows + 1
    if board.type == "charuco":
        img = charuco_board(board).generateImage((nx * p, ny * p), marginSize=0, borderBits=1)
        inner = img.astype(np.float32) / 255.0
    else:
        jj, ii = np.meshgrid(np.arange(nx * p) // p, np.arange(ny * p) // p)
        inner = ((ii + jj) % 2 == 1).astype(np.float32)  # square (0, 0), outward from corner 0, is dark
    return np.pad(inner, p, constant_values=1.0), np.array([-2 * s, -2 * s])


def render(
    cam: TrueCamera,
    board: BoardConfig,
    rvec: np.ndarray,
    tvec: np.ndarray,
    *,
    ss: int = 3,
    texture: tuple[np.ndarray, np.ndarray] | None = None,
    px_per_square: int = 48,
    blur_sigma: float = 0.0,
    noise: float = 1.5,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render the board at pose (rvec, tvec) (board -> camera) as a uint8 (H, W) image."""
    tex, origin = texture if texture is not None else board_texture(board, px_per_square)
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    t = np.asarray(tvec, np.float64).ravel()
    rays = cam.rays(ss)
    n = R[:, 2]
    denom = rays @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(denom > 1e-9, (n @ t) / denom, np.nan)
    local = (rays @ R) * depth[..., None] - R.T @ t  # board-frame metres
    scale = px_per_square / board.square_size_m
    mx = ((local[..., 0] - origin[0]) * scale - 0.5).astype(np.float32)
    my = ((local[..., 1] - origin[1]) * scale - 0.5).astype(np.float32)
    mx[~np.isfinite(mx)] = -1e6
    my[~np.isfinite(my)] = -1e6
    lo, hi = 30.0, 215.0
    big = cv2.remap(
        tex * (hi - lo) + lo, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=90.0
    )
    img = cv2.resize(big, cam.size, interpolation=cv2.INTER_AREA)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma)
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        img = img + rng.normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _rotation(roll: float, tilt_x: float, tilt_y: float) -> np.ndarray:
    rz, _ = cv2.Rodrigues(np.array([0.0, 0.0, roll]))
    rx, _ = cv2.Rodrigues(np.array([tilt_x, 0.0, 0.0]))
    ry, _ = cv2.Rodrigues(np.array([0.0, tilt_y, 0.0]))
    return rx @ ry @ rz


def board_outline(board: BoardConfig) -> np.ndarray:
    """Board-frame corners (4, 3) of the printed squares (the outer edge of the pattern)."""
    s = board.square_size_m
    x0, y0 = -s, -s
    x1, y1 = x0 + (board.cols + 1) * s, y0 + (board.rows + 1) * s
    return np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], float)


ANCHORS = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5], [0.5, 0], [0.5, 1], [0, 0.5], [1, 0.5]])


def random_poses(
    cam: TrueCamera,
    board: BoardConfig,
    n: int,
    rng: np.random.Generator,
    *,
    fill: tuple[float, float] = (0.35, 0.65),
    max_tilt_deg: float = 40.0,
    partial: bool = False,
    margin_px: float = 12.0,
    tries: int = 30,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` random board poses that sweep the image, board width ``fill`` of the image width.

    Pose k aims at an anchor (the image corners, edge midpoints and centre, in turn): of
    ``tries`` random valid poses it keeps the one with a corner nearest the anchor, so a short
    sweep still reaches the corners of the image, as a careful operator would.
    With ``partial`` the board may leave the image (at least 30 % of the corners stay in);
    otherwise the whole pattern and a margin stay inside.
    """
    w, h = cam.size
    f = cam.K[0, 0]
    max_norm = 3.0 if cam.model == "fisheye" else 1.2
    width_m = (board.cols + 1) * board.square_size_m
    centre_local = board_outline(board)[:, :3].mean(axis=0)
    obj = object_points(board).astype(float)
    tilt = np.deg2rad(max_tilt_deg)

    def candidate(anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        depth = f * width_m / (rng.uniform(*fill) * w)
        target = np.clip(anchor + rng.normal(0, 0.25, 2), 0.02, 0.98) * [w, h]
        ray = np.append(cam.undistort(target[None])[0], 1.0)
        R = _rotation(rng.uniform(-0.4, 0.4), rng.uniform(-tilt, tilt), rng.uniform(-tilt, tilt))
        t = ray * depth - R @ centre_local
        rvec, _ = cv2.Rodrigues(R)
        pts_cam = obj @ R.T + t
        if (pts_cam[:, 2] < 0.05).any():
            return None
        norm = np.linalg.norm(pts_cam[:, :2] / pts_cam[:, 2:], axis=1)
        uv = cam.project(obj, rvec, t)
        inside = (uv >= margin_px).all(axis=1) & (uv <= [w - 1 - margin_px, h - 1 - margin_px]).all(axis=1)
        if partial:
            ok = inside.mean() >= 0.3 and norm[inside].max() < max_norm
        else:
            outline = cam.project(board_outline(board), rvec, t)
            ok = (
                bool(inside.all())
                and norm.max() < max_norm
                and (outline >= 2).all()
                and (outline <= [w - 3, h - 3]).all()
            )
        if not ok:
            return None
        return rvec.ravel(), t, float(np.min(np.linalg.norm(uv[inside] - anchor * [w, h], axis=1)))

    poses: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(n):
        anchor = ANCHORS[k % len(ANCHORS)]
        found: list[tuple[np.ndarray, np.ndarray, float]] = []
        while len(found) < tries:
            c = candidate(anchor)
            if c is not None:
                found.append(c)
        rvec, t, _ = min(found, key=lambda c: c[2])
        poses.append((rvec, t))
    return poses


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """Write grayscale frames (H, W) uint8 losslessly (FFV1 in .mkv)."""
    h, w = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h), isColor=False)
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a FFV1 writer for {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return Path(path)


def default_camera(model: str = "pinhole5", size: tuple[int, int] = (640, 480)) -> TrueCamera:
    """A test camera with clear barrel distortion; ``model`` pinhole5 | rational8 | fisheye."""
    w, h = size
    K = np.array([[0.92 * w, 0, w / 2 - 1.7], [0, 0.92 * w * 1.003, h / 2 + 3.2], [0, 0, 1]])
    if model == "fisheye":
        return TrueCamera(
            K=np.array([[0.45 * w, 0, w / 2 + 2.1], [0, 0.45 * w, h / 2 - 1.4], [0, 0, 1]]),
            dist=np.array([0.05, -0.01, 0.004, -0.001]),
            size=size,
            model="fisheye",
        )
    if model == "rational8":
        dist = np.array([0.35, -0.05, 0.0008, -0.0006, 0.01, 0.62, -0.02, 0.02])
    else:
        dist = np.array([-0.26, 0.09, 0.0008, -0.0006, -0.015])
    return TrueCamera(K=K, dist=dist, size=size)


def render_sweep(
    path: str | Path,
    cam: TrueCamera,
    board: BoardConfig,
    n: int,
    seed: int = 0,
    *,
    partial: bool = False,
    blur_every: int = 0,
    **pose_kw,
) -> tuple[Path, list]:
    """Render ``n`` random board views into a video; every ``blur_every``-th frame is blurred."""
    rng = np.random.default_rng(seed)
    poses = random_poses(cam, board, n, rng, partial=partial, **pose_kw)
    texture = board_texture(board)
    frames = [
        render(
            cam,
            board,
            r,
            t,
            texture=texture,
            rng=rng,
            blur_sigma=2.5 if blur_every and i % blur_every == blur_every - 1 else 0.0,
        )
        for i, (r, t) in enumerate(poses)
    ]
    return write_video(path, frames), poses
