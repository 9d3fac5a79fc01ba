"""Synthetic rigs and board observations for the extrinsics tests and benchmark (projection + noise, no rendering).

Cameras stand on a ring around the origin (world: floor, z up) and look at its centre; a
checkerboard moves through the volume, each frame turned towards a random group of neighbouring
cameras. Corners are projected with OpenCV's model and perturbed by Gaussian pixel noise;
corners outside an image or on a board seen from behind are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration.board import BoardConfig, object_points
from pipeline.calibration.covisibility import Observations
from pipeline.calibration.extrinsics import Intrinsics
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig


def look_at(center: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World -> camera rotation of a camera at ``center`` looking at ``target`` (image y down)."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def ring_rig(n_cams: int = 4, radius: float = 2.6, size: tuple[int, int] = (640, 480), seed: int = 0,
             stereo: bool = False) -> Rig:
    """``n_cams`` cameras on a ring (plus a stereo pair ``stereo_l``/``stereo_r`` 12 cm apart)."""
    rng = np.random.default_rng(seed)
    cams = []
    w, h = size
    for i in range(n_cams):
        az = 2 * np.pi * i / n_cams + rng.uniform(-0.1, 0.1)
        c = np.array([radius * np.cos(az), radius * np.sin(az), rng.uniform(1.5, 2.4)])
        R = look_at(c, np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 1.0]))
        f = w / 2 / np.tan(np.radians(rng.uniform(30, 35)))
        K = np.array([[f, 0, w / 2 + rng.uniform(-10, 10)],
                      [0, f * rng.uniform(0.995, 1.005), h / 2 + rng.uniform(-8, 8)], [0, 0, 1]])
        dist = np.array([rng.uniform(-0.25, 0.05), rng.uniform(-0.02, 0.06), *rng.normal(0, 1e-3, 2), 0.0])
        cams.append(Camera(f"cam{i}", size, K, dist, R, -R @ c))
    if stereo:
        az = np.pi / n_cams
        body = np.array([3.0 * np.cos(az), 3.0 * np.sin(az), 1.6])
        R = look_at(body, np.array([0.0, 0.0, 1.0]))
        rel = cv2.Rodrigues(np.array([0.002, -0.004, 0.003]))[0]
        for name, sign, Rl in (("stereo_l", -0.5, R), ("stereo_r", 0.5, rel @ R)):
            c = body + sign * 0.12 * R[0]
            f = w / 2 / np.tan(np.radians(31))
            K = np.array([[f, 0, w / 2 + 3], [0, f, h / 2 - 2], [0, 0, 1]])
            cams.append(Camera(name, size, K, np.array([-0.1, 0.02, 0.0, 0.0, 0.0]), Rl, -Rl @ c))
    return Rig(tuple(cams), world="floor")


@dataclass(frozen=True)
class SyntheticSweep:
    """A rig, the board, its per-frame poses (board -> world) and the noisy observations."""

    rig: Rig
    board: BoardConfig
    board_R: np.ndarray  # (F, 3, 3)
    board_t: np.ndarray  # (F, 3)
    obs: Observations

    def intrinsics(self) -> list[Intrinsics]:
        """The true intrinsics, as calibrate_intrinsics would give them."""
        return [Intrinsics(c.name, c.image_size, c.K, c.dist) for c in self.rig.cameras]


def board_rotation_facing(view_dir: np.ndarray, rng: np.random.Generator, tilt_deg: float = 25.0) -> np.ndarray:
    """Board -> world rotation whose z axis (into the board) is ``-view_dir``, tilted at random."""
    z = -view_dir / np.linalg.norm(view_dir)
    down = np.array([0.0, 0.0, -1.0])
    y = down - (down @ z) * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    R = np.stack([x, y, z], axis=1)
    return R @ cv2.Rodrigues(np.radians(rng.uniform(-tilt_deg, tilt_deg, 3)))[0]


def sweep(rig: Rig, n_frames: int = 60, noise_px: float = 0.2, seed: int = 1, board: BoardConfig | None = None,
          group: int = 2) -> SyntheticSweep:
    """Move a board through the volume; each frame it faces ``group`` neighbouring cameras."""
    board = board or BoardConfig(inner_corners=(9, 6), square_size_m=0.06)
    rng = np.random.default_rng(seed)
    obj = object_points(board).astype(np.float64)
    centre = obj.mean(axis=0)
    C = len(rig)
    Rs, ts = [], []
    for f in range(n_frames):
        first = f % C
        members = [(first + k) % C for k in range(min(group, C))]
        target = rig.centers[members].mean(axis=0)
        pos = np.array([*(target[:2] / np.linalg.norm(target[:2]) * rng.uniform(0.2, 0.9)
                          + rng.uniform(-0.3, 0.3, 2)), rng.uniform(0.8, 1.6)])
        R = board_rotation_facing(target - pos, rng)
        Rs.append(R)
        ts.append(pos - R @ centre)
    Rs, ts = np.stack(Rs), np.stack(ts)
    pts = np.einsum("fij,nj->fni", Rs, obj) + ts[:, None, :]  # (F, N, 3)
    uv = rig.project(pts)  # (C, F, N, 2)
    noise = rng.normal(0.0, noise_px, uv.shape)
    uv = uv + noise
    inside = np.stack([cam.in_image(uv[c]) for c, cam in enumerate(rig.cameras)])
    facing = np.einsum("cfk,fk->cf", rig.centers[:, None, :] - (ts + np.einsum("fij,j->fi", Rs, centre))[None],
                       Rs[:, :, 2]) < 0
    ok = inside & facing[:, :, None]
    full = ok.all(axis=2, keepdims=True)  # a checkerboard is found whole or not at all
    uv = np.where(full[..., None], uv, np.nan)
    obs = Observations(tuple(rig.names), np.arange(n_frames), uv, tuple(c.image_size for c in rig.cameras))
    return SyntheticSweep(rig, board, Rs, ts, obs)


def similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: (s, R, t) minimising |s R src + t - dst|² over points (K, 3)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / np.mean(np.sum(a * a, axis=1)))
    return s, R, mu_d - s * R @ mu_s


def rig_errors(est: Rig, truth: Rig) -> dict[str, np.ndarray | float]:
    """Centre (mm) and rotation (deg) errors per camera after a similarity alignment of the centres."""
    truth = truth.subset(est.names)
    s, R, t = similarity_align(est.centers, truth.centers)
    centres = s * est.centers @ R.T + t
    centre_mm = np.linalg.norm(centres - truth.centers, axis=1) * 1000
    # est world -> truth world is x_t = s R x_e + t; camera rotation in truth frame: R_c R^T
    rot = np.einsum("cij,kj->cik", est.R, R)
    tr = np.einsum("cij,cij->c", rot, truth.R)
    rot_deg = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
    return {"centre_mm": centre_mm, "rotation_deg": rot_deg, "scale": s}
