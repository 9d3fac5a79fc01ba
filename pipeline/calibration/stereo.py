"""Stereo pairs: ``cv2.stereoCalibrate`` with the intrinsics fixed, ``cv2.stereoRectify``, and the rectification check.

For a pair (a, b), every frame in which both cameras hold a usable view of the board gives one
stereo view (the corners both saw). ``cv2.stereoCalibrate`` (``CALIB_FIX_INTRINSIC``) solves the
pose of b relative to a (``X_b = R X_a + T``, metres) and E, F; ``cv2.stereoRectify`` then gives
the rectifying rotations R1, R2, projections P1, P2 and the disparity-to-depth matrix Q.

The check: every corner pair is mapped into the rectified images (``cv2.undistortPoints`` with
R1/P1 and R2/P2); in a well calibrated pair corresponding corners share a row, so the mean
|Δy| (|Δx| for a vertical pair) measures the calibration in pixels. The check picture shows a
rectified frame of each camera side by side with horizontal lines and the corner pairs joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

STEREO_SCHEMA = "stereo@1"
CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)


@dataclass(frozen=True)
class StereoViews:
    """Matched corners of a pair: per view ``k``, ``object_points[k]`` (M_k, 3) m and the pixels in a and b."""

    frames: np.ndarray
    object_points: list[np.ndarray]
    uv_a: list[np.ndarray]
    uv_b: list[np.ndarray]

    @property
    def n_views(self) -> int:
        return len(self.object_points)


def stereo_views(corners_a: np.ndarray, corners_b: np.ndarray, usable: np.ndarray, frames: np.ndarray,
                 object_points: np.ndarray, min_corners: int) -> StereoViews:
    """Collect the shared views of a pair.

    Args:
        corners_a, corners_b: (F, N, 2) px, NaN where unseen.
        usable: bool (F,) both cameras hold a usable view (see rig_init).
        frames: int (F,) frame numbers.
        object_points: (N, 3) board corners, metres.
        min_corners: fewest corners both must see.
    """
    both = np.isfinite(corners_a).all(axis=-1) & np.isfinite(corners_b).all(axis=-1)
    out_f, obj, ua, ub = [], [], [], []
    for f in np.flatnonzero(usable):
        m = both[f]
        if m.sum() < max(min_corners, 6):
            continue
        out_f.append(int(frames[f]))
        obj.append(object_points[m].astype(np.float32))
        ua.append(corners_a[f, m].astype(np.float32))
        ub.append(corners_b[f, m].astype(np.float32))
    return StereoViews(np.asarray(out_f, np.int64), obj, ua, ub)


@dataclass(frozen=True)
class StereoResult:
    """One calibrated stereo pair (all arrays float64; lengths in metres unless named otherwise).

    Attributes:
        cameras: (a, b).
        image_size: (width, height) of a, used for rectification.
        K_a, dist_a, K_b, dist_b: the fixed intrinsics.
        R, T: pose of b relative to a, ``X_b = R X_a + T``.
        E, F: essential and fundamental matrices.
        R1, R2, P1, P2, Q: from ``cv2.stereoRectify``.
        rms_px: stereoCalibrate's RMS reprojection error.
        frames: the frames used.
        rect_error_px: (M,) |Δy| (|Δx| when vertical) of every corner pair after rectification.
        vertical: the pair is stacked vertically (rectified columns are compared).
    """

    cameras: tuple[str, str]
    image_size: tuple[int, int]
    K_a: np.ndarray
    dist_a: np.ndarray
    K_b: np.ndarray
    dist_b: np.ndarray
    R: np.ndarray
    T: np.ndarray
    E: np.ndarray
    F: np.ndarray
    R1: np.ndarray
    R2: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    Q: np.ndarray
    rms_px: float
    frames: np.ndarray
    rect_error_px: np.ndarray
    vertical: bool

    @property
    def baseline_mm(self) -> float:
        return float(np.linalg.norm(self.T) * 1000.0)

    @property
    def mean_rect_error_px(self) -> float:
        return float(np.mean(self.rect_error_px)) if self.rect_error_px.size else float("nan")

    def as_yaml(self, extra: dict | None = None) -> dict:
        """The body of ``calib/stereo/<a>-<b>.yaml`` (schema ``posecap/stereo@1``)."""
        e = self.rect_error_px
        body = {
            "cameras": list(self.cameras),
            "image_size": list(self.image_size),
            "K_a": self.K_a, "dist_a": self.dist_a, "K_b": self.K_b, "dist_b": self.dist_b,
            "R": self.R, "T": self.T.ravel(), "E": self.E, "F": self.F,
            "R1": self.R1, "R2": self.R2, "P1": self.P1, "P2": self.P2, "Q": self.Q,
            "baseline_mm": round(self.baseline_mm, 4),
            "rms_px": round(self.rms_px, 5),
            "rectified": {
                "direction": "vertical" if self.vertical else "horizontal",
                "mean_abs_dy_px": round(self.mean_rect_error_px, 5),
                "p95_abs_dy_px": round(float(np.percentile(e, 95)), 5) if e.size else None,
                "max_abs_dy_px": round(float(e.max()), 5) if e.size else None,
            },
            "frames_used": [int(f) for f in self.frames],
        }
        body.update(extra or {})
        return body


def rectified_points(uv: np.ndarray, K: np.ndarray, dist: np.ndarray, R_rect: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Distorted pixels (M, 2) -> rectified pixels (M, 2)."""
    pts = np.ascontiguousarray(uv, np.float64).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    return cv2.undistortPoints(pts, K, dist, R=R_rect, P=P, criteria=crit).reshape(-1, 2)


def calibrate_pair(views: StereoViews, names: tuple[str, str], image_size: tuple[int, int],
                   K_a: np.ndarray, dist_a: np.ndarray, K_b: np.ndarray, dist_b: np.ndarray,
                   alpha: float = 0.0) -> StereoResult:
    """Stereo-calibrate and rectify a pair from its shared views (intrinsics fixed).

    Raises:
        ValueError: fewer than one shared view (the caller turns this into a user message).
    """
    if views.n_views < 1:
        raise ValueError(f"no frame where both {names[0]} and {names[1]} see the board")
    K_a, K_b = np.asarray(K_a, np.float64), np.asarray(K_b, np.float64)
    dist_a, dist_b = np.asarray(dist_a, np.float64), np.asarray(dist_b, np.float64)
    obj = [o.reshape(-1, 1, 3) for o in views.object_points]
    ua = [u.reshape(-1, 1, 2) for u in views.uv_a]
    ub = [u.reshape(-1, 1, 2) for u in views.uv_b]
    rms, _, _, _, _, R, T, E, F = cv2.stereoCalibrate(obj, ua, ub, K_a, dist_a, K_b, dist_b, tuple(image_size),
                                                      flags=cv2.CALIB_FIX_INTRINSIC, criteria=CRITERIA)
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(K_a, dist_a, K_b, dist_b, tuple(image_size), R, T,
                                                flags=cv2.CALIB_ZERO_DISPARITY, alpha=alpha)
    vertical = abs(P2[1, 3]) > abs(P2[0, 3])
    ra = rectified_points(np.concatenate(views.uv_a), K_a, dist_a, R1, P1)
    rb = rectified_points(np.concatenate(views.uv_b), K_b, dist_b, R2, P2)
    axis = 0 if vertical else 1
    err = np.abs(ra[:, axis] - rb[:, axis])
    return StereoResult(tuple(names), tuple(int(v) for v in image_size), K_a, dist_a, K_b, dist_b, R, T.ravel(), E,
                        F, R1, R2, P1, P2, Q, float(rms), views.frames, err, bool(vertical))


def check_image(result: StereoResult, image_a: np.ndarray, image_b: np.ndarray,
                uv_a: np.ndarray | None = None, uv_b: np.ndarray | None = None, line_every_px: int = 24) -> np.ndarray:
    """Rectified side-by-side picture of one frame (uint8 BGR, (h, 2w, 3)).

    Args:
        result: the calibrated pair.
        image_a, image_b: the frame of each camera (gray or BGR).
        uv_a, uv_b: optional (M, 2) corresponding corners in that frame, joined by lines.
        line_every_px: spacing of the horizontal guide lines.
    """
    w, h = result.image_size
    imgs = []
    for img, K, d, Rr, P in ((image_a, result.K_a, result.dist_a, result.R1, result.P1),
                             (image_b, result.K_b, result.dist_b, result.R2, result.P2)):
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        mx, my = cv2.initUndistortRectifyMap(K, d, Rr, P, (w, h), cv2.CV_32FC1)
        imgs.append(cv2.remap(img, mx, my, cv2.INTER_LINEAR))
    canvas = np.concatenate(imgs, axis=1)
    for y in range(line_every_px // 2, h, line_every_px):
        cv2.line(canvas, (0, y), (2 * w - 1, y), (0, 200, 0), 1, cv2.LINE_AA)
    if uv_a is not None and uv_b is not None and len(uv_a):
        ra = rectified_points(uv_a, result.K_a, result.dist_a, result.R1, result.P1)
        rb = rectified_points(uv_b, result.K_b, result.dist_b, result.R2, result.P2)
        shift = 16  # fixed-point drawing for sub-pixel positions
        for pa, pb in zip(ra, rb):
            a = tuple(int(round(v * (1 << 4))) for v in pa)
            b = (int(round((pb[0] + w) * (1 << 4))), int(round(pb[1] * (1 << 4))))
            cv2.line(canvas, a, b, (255, 160, 0), 1, cv2.LINE_AA, 4)
            cv2.circle(canvas, a, 3 * shift, (0, 0, 255), 1, cv2.LINE_AA, 4)
            cv2.circle(canvas, b, 3 * shift, (0, 0, 255), 1, cv2.LINE_AA, 4)
    axis = "x" if result.vertical else "y"
    label = (f"{result.cameras[0]} | {result.cameras[1]}  baseline {result.baseline_mm:.2f} mm  "
             f"RMS {result.rms_px:.3f} px  mean |d{axis}| {result.mean_rect_error_px:.3f} px")
    cv2.rectangle(canvas, (0, 0), (min(2 * w, 9 * len(label)), 22), (0, 0, 0), -1)
    cv2.putText(canvas, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def pair_name(pair: Sequence[str]) -> str:
    """``a-b`` (the file stem of a pair's artifacts)."""
    return f"{pair[0]}-{pair[1]}"
