"""Per-camera image formation: room plate, board or people, then optics and sensor effects.

One :class:`CameraRenderer` per lens caches its supersampled viewing rays and the static room
plate. A frame is composed on the supersampled grid, box-filtered down to pixels, then lit
unevenly (vignetting, a light gradient across the board), blurred, given sensor noise and
quantized. All randomness comes from generators keyed by (seed, recording, camera, frame), so any
frame can be re-rendered alone and equals the recorded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.synth.board import BoardPose, BoardRenderer
from pipeline.synth.camera import CameraModel
from pipeline.synth.people import PersonParams
from pipeline.synth.render_people import PeopleBuffers, render_people
from pipeline.synth.room import render_room

PAPER = np.array([0.9, 0.9, 0.88], np.float32)
INK = np.array([0.06, 0.06, 0.07], np.float32)
RECORDING_KEYS = {"intrinsics": 1, "extrinsics": 2, "capture": 3}


@dataclass(frozen=True)
class SensorParams:
    """Optics and sensor effects applied after the box filter."""

    noise_sigma: float = 2.0  # grey levels (0–255 scale), Gaussian
    blur_sigma: float = 0.6  # pixels, Gaussian (lens + demosaicing softness)
    vignetting: float = 0.25  # relative fall-off at the image corners


@dataclass
class CameraRenderer:
    """Renders frames for one lens."""

    camera: CameraModel
    index: int
    seed: int
    supersample: int
    sensor: SensorParams
    rays: np.ndarray = field(init=False, repr=False)
    plate_ss: np.ndarray = field(init=False, repr=False)
    plate: np.ndarray = field(init=False, repr=False)
    gain: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.supersample
        self.rays = self.camera.pixel_rays_world(s).astype(np.float64)
        rgb, _ = render_room(self.rays, self.camera.center_world, salt=7)
        self.plate_ss = rgb
        self.plate = _downsample(rgb, s)
        w, h = self.camera.image_size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        exposure = np.random.default_rng([self.seed, 99, self.index]).uniform(0.9, 1.1)
        self.gain = (exposure * (1.0 - self.sensor.vignetting * r2 / 2.0)).astype(np.float32)

    def _finish(self, rgb: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        """Vignetting, blur, noise, quantization; returns uint8 BGR."""
        img = rgb * self.gain[..., None] * 255.0
        if self.sensor.blur_sigma > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.sensor.blur_sigma, borderType=cv2.BORDER_REFLECT)
        if self.sensor.noise_sigma > 0:
            noise = np.random.default_rng([self.seed, *key]).standard_normal(img.shape, dtype=np.float32)
            img = img + noise * np.float32(self.sensor.noise_sigma)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)[..., ::-1].copy()

    def board_frame(self, board: BoardRenderer, pose: BoardPose | None, recording: str,
                    frame_index: int) -> np.ndarray:
        """Render one calibration frame (uint8 BGR, ``(h, w, 3)``)."""
        rgb = self.plate.copy()
        if pose is not None:
            region = self._board_region(board, pose)
            if region is not None:
                x0, y0, x1, y1 = region
                s = self.supersample
                rays = self.rays[y0 * s:y1 * s, x0 * s:x1 * s]
                value, hit, _ = board.render(rays, self.camera.center_world, pose)
                key = [self.seed, RECORDING_KEYS[recording], self.index, frame_index, 5]
                rng = np.random.default_rng(key)
                gx, gy = rng.uniform(-0.25, 0.25, size=2)
                level = rng.uniform(0.85, 1.1)
                yy, xx = np.mgrid[y0 * s:y1 * s, x0 * s:x1 * s].astype(np.float32)
                w, h = self.camera.image_size
                light = level * (1.0 + gx * (xx / (w * s) - 0.5) * 2 + gy * (yy / (h * s) - 0.5) * 2)
                col = (INK + (PAPER - INK) * value[..., None]) * light[..., None]
                ss = np.where(hit[..., None], col, self.plate_ss[y0 * s:y1 * s, x0 * s:x1 * s])
                rgb[y0:y1, x0:x1] = _downsample(ss.astype(np.float32), s)
        return self._finish(rgb, (RECORDING_KEYS[recording], self.index, frame_index))

    def _board_region(self, board: BoardRenderer, pose: BoardPose) -> tuple[int, int, int, int] | None:
        """Pixel box ``(x0, y0, x1, y1)`` (exclusive) that contains the board, or None if off-image."""
        x0, y0, x1, y1 = board.spec.extent_m()
        ts = np.linspace(0.0, 1.0, 9)
        edge = np.concatenate([
            np.stack([x0 + (x1 - x0) * ts, np.full_like(ts, y0)], 1),
            np.stack([x0 + (x1 - x0) * ts, np.full_like(ts, y1)], 1),
            np.stack([np.full_like(ts, x0), y0 + (y1 - y0) * ts], 1),
            np.stack([np.full_like(ts, x1), y0 + (y1 - y0) * ts], 1),
        ])
        pts = np.concatenate([edge, np.zeros((len(edge), 1))], 1) @ pose.R.T + pose.origin
        cam_pts = self.camera.world_to_cam(pts)
        w, h = self.camera.image_size
        if (cam_pts[:, 2] <= 0.02).all():
            return None
        if (cam_pts[:, 2] <= 0.02).any():
            return 0, 0, w, h
        uv = self.camera.project(pts)
        bx0 = max(int(np.floor(uv[:, 0].min())) - 3, 0)
        by0 = max(int(np.floor(uv[:, 1].min())) - 3, 0)
        bx1 = min(int(np.ceil(uv[:, 0].max())) + 4, w)
        by1 = min(int(np.ceil(uv[:, 1].max())) + 4, h)
        if bx0 >= bx1 or by0 >= by1:
            return None
        return bx0, by0, bx1, by1

    def people_frame(self, points: np.ndarray, people: list[PersonParams],
                     frame_index: int) -> tuple[np.ndarray, PeopleBuffers]:
        """Render one capture frame; returns (uint8 BGR image, the supersampled people buffers)."""
        buffers = render_people(self.camera, self.rays, points, people, self.supersample)
        mask = buffers.person >= 0
        ys, xs = np.nonzero(mask)
        rgb = self.plate.copy()
        if len(ys):
            s = self.supersample
            y0, y1 = ys.min() // s, ys.max() // s + 1
            x0, x1 = xs.min() // s, xs.max() // s + 1
            sl = (slice(y0 * s, y1 * s), slice(x0 * s, x1 * s))
            ss = np.where(mask[sl][..., None], buffers.rgb[sl], self.plate_ss[sl])
            rgb[y0:y1, x0:x1] = _downsample(ss.astype(np.float32), s)
        return self._finish(rgb, (RECORDING_KEYS["capture"], self.index, frame_index)), buffers

    def clean_plate(self) -> np.ndarray:
        """The empty room as float RGB in [0, 1], before vignetting, blur and noise: (h, w, 3)."""
        return self.plate.copy()


def _downsample(img: np.ndarray, s: int) -> np.ndarray:
    """Box-filter an ``(H*s, W*s, C)`` image to ``(H, W, C)``."""
    if s == 1:
        return img.astype(np.float32)
    hs, ws = img.shape[:2]
    # INTER_AREA with an integer factor is an exact s×s box average.
    src = np.ascontiguousarray(img, dtype=np.float32)
    return cv2.resize(src, (ws // s, hs // s), interpolation=cv2.INTER_AREA)
