"""2D overlays: per camera, its detections and the reprojected 3D skeletons on its video.

For every camera of the rig and every pose3d frame (every ``stride``-th one) the frame of the
camera's capture stream is drawn with:

- the camera's 2D detections (``pose2d/<cam>.npz``, keypoints scoring at least
  ``score_threshold``) as thin lines with ring joints, in a light tint of the colour of the person
  they were matched to (grey when they match nobody);
- the 3D skeletons projected into the camera (with its lens distortion) as thick lines with dot
  joints, coloured by identity (person slot), each labelled ``P<id> <error> px`` with the
  person's mean reprojection error in that frame, and thin white residual lines from each matched
  detected joint to its reprojection;
- a header with the camera, the frame number and the frame's mean reprojection error.

A camera without a stream (a session made by hand) is drawn on a neutral grey background of the
rig's image size. Outputs: ``<out>/overlay/<cam>.mp4``, the ``<out>/mosaic.mp4`` of all cameras
and ``<out>/contact_sheet.png`` (a few frames x all cameras). One pass over the frames, one frame
per camera in memory.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.export.pose3d import Pose3D
from pipeline.geometry.rig import Rig
from pipeline.visualization.draw import (
    UNMATCHED_BGR,
    VideoSink,
    draw_residuals,
    draw_skeleton,
    fit_size,
    grid_columns,
    header_bar,
    neutral_frame,
    person_bgr,
    put_label,
    tile_grid,
    tint,
    write_png,
)
from pipeline.visualization.inputs import load_pose2d_aligned

log = logging.getLogger("posecap")

MATCH_FRACTION = 0.06
"""A detection matches a reprojected person when their median joint distance is below this
fraction of the image diagonal."""


@dataclass(frozen=True)
class OverlayOptions:
    """Overlay settings.

    Attributes:
        score_threshold: 2D keypoints scoring below this are not drawn.
        scale: size of the per-camera videos relative to the camera image.
        per_camera: write ``overlay/<cam>.mp4``.
        mosaic: write ``mosaic.mp4``.
        mosaic_max_width: the mosaic's width limit, px.
        contact_frames: frames in the contact sheet (0 = none).
        contact_tile_width: width of one contact-sheet tile, px.
    """

    score_threshold: float = 0.3
    scale: float = 1.0
    per_camera: bool = True
    mosaic: bool = True
    mosaic_max_width: int = 1920
    contact_frames: int = 4
    contact_tile_width: int = 320


class FrameSource:
    """One camera's frames by increasing frame number; a neutral background where there is no video.

    ``size`` is the rig's ``(width, height)``; stream frames of another size are resized to it
    (with a warning), so that pixel coordinates from the rig stay valid.
    """

    def __init__(self, cam: str, path: Path | None, size: tuple[int, int]) -> None:
        self.cam = cam
        self.size = size
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._warned = False
        if path is not None:
            if not path.exists():
                log.warning("visualize: stream %s of camera %s not found; drawing on a neutral background", path, cam)
            else:
                cap = cv2.VideoCapture(str(path))
                if cap.isOpened():
                    self._cap = cap
                else:
                    log.warning("visualize: cannot open %s; drawing camera %s on a neutral background", path, cam)

    @property
    def has_video(self) -> bool:
        return self._cap is not None

    def get(self, frame_number: int) -> np.ndarray:
        """The frame ``frame_number`` (>= every number asked before), BGR of the rig's size."""
        if self._cap is None or frame_number < self._pos:
            return neutral_frame(self.size)
        while self._pos < frame_number:
            if not self._cap.grab():
                return self._ended(frame_number)
            self._pos += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return self._ended(frame_number)
        self._pos += 1
        if (frame.shape[1], frame.shape[0]) != self.size:
            if not self._warned:
                log.warning("visualize: camera %s stream frames are %dx%d but rig.yaml says %dx%d; resizing",
                            self.cam, frame.shape[1], frame.shape[0], *self.size)
                self._warned = True
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_LINEAR)
        return frame

    def _ended(self, frame_number: int) -> np.ndarray:
        log.warning("visualize: stream of camera %s ends before frame %d; neutral background from there",
                    self.cam, frame_number)
        self.close()
        return neutral_frame(self.size)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def match_detections(det: np.ndarray, reproj: np.ndarray, max_px: float, score_threshold: float) -> np.ndarray:
    """Assign each 2D detection to the reprojected person it overlays (greedy, nearest first).

    Args:
        det: (D, J, 3) detections ``[x, y, score]``.
        reproj: (P, J, 2) reprojected joints, NaN where unknown.
        max_px: largest median joint distance of a match.
        score_threshold: joints scoring below this are ignored.

    Returns:
        (D,) person slot per detection, -1 for none; each person takes at most one detection.
    """
    D, P = det.shape[0], reproj.shape[0]
    out = np.full(D, -1, dtype=np.int64)
    if D == 0 or P == 0:
        return out
    xy = np.where((det[..., 2:3] >= score_threshold), det[..., :2], np.nan)
    dist = np.linalg.norm(xy[:, None] - reproj[None], axis=-1)  # (D, P, J)
    enough = np.isfinite(dist).sum(axis=-1) >= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        med = np.nanmedian(np.where(enough[..., None], dist, np.nan), axis=-1)
    med = np.where(np.isfinite(med), med, np.inf)
    taken_p: set[int] = set()
    for flat in np.argsort(med, axis=None):
        d, p = divmod(int(flat), P)
        if med[d, p] > max_px:
            break
        if out[d] < 0 and p not in taken_p:
            out[d] = p
            taken_p.add(p)
    return out


def draw_camera_frame(img: np.ndarray, cam: str, frame_number: int, det: np.ndarray | None, reproj: np.ndarray,
                      err_person: np.ndarray, limbs, score_threshold: float) -> np.ndarray:
    """Draw one camera's overlay on ``img`` (modified and returned).

    Args:
        det: (D, J, 3) the camera's detections in this frame, or None.
        reproj: (P, J, 2) reprojected 3D joints, NaN where unknown or behind the camera.
        err_person: (P,) mean reprojection error of each person in this frame, px (NaN unknown).
    """
    h, w = img.shape[:2]
    diag = float(np.hypot(w, h))
    thick = max(2, int(round(diag / 450)))
    radius = max(2.0, diag / 350)
    owner = np.full(0, -1)
    if det is not None and det.shape[0]:
        owner = match_detections(det, reproj, MATCH_FRACTION * diag, score_threshold)
        for d in range(det.shape[0]):
            uv = np.where(det[d, :, 2:3] >= score_threshold, det[d, :, :2], np.nan)
            color = tint(person_bgr(owner[d]), 0.55) if owner[d] >= 0 else UNMATCHED_BGR
            draw_skeleton(img, uv, limbs, color, thickness=max(1, thick // 2), radius=radius, filled=False)
    for p in range(reproj.shape[0]):
        uv = reproj[p]
        if not np.isfinite(uv).all(axis=1).any():
            continue
        draw_skeleton(img, uv, limbs, person_bgr(p), thickness=thick, radius=radius * 0.8)
        matched = np.flatnonzero(owner == p)
        if matched.size and det is not None:
            du = np.where(det[matched[0], :, 2:3] >= score_threshold, det[matched[0], :, :2], np.nan)
            draw_residuals(img, du, uv, (255, 255, 255))
        top = np.nanargmin(np.where(np.isfinite(uv[:, 1]), uv[:, 1], np.inf))
        err = err_person[p]
        label = f"P{p} {err:.1f} px" if np.isfinite(err) else f"P{p}"
        put_label(img, label, (uv[top, 0] - 20, uv[top, 1] - 2 * radius - 4), person_bgr(p))
    finite = err_person[np.isfinite(err_person)]
    mean = f"{finite.mean():.2f} px" if finite.size else "n/a"
    header_bar(img, f"{cam}  frame {frame_number}  reprojection {mean}  "
                    f"(thick: 3D reprojected, thin: 2D detected)")
    return img


def pick_frames(known_any: np.ndarray, count: int) -> list[int]:
    """``count`` evenly spaced positions among the frames where someone is known (else among all)."""
    candidates = np.flatnonzero(known_any)
    if candidates.size == 0:
        candidates = np.arange(known_any.shape[0])
    if count <= 0 or candidates.size == 0:
        return []
    pos = np.linspace(0, candidates.size - 1, min(count, candidates.size)).round().astype(int)
    return sorted({int(candidates[i]) for i in pos})


def render_overlays(rig: Rig, pose: Pose3D, pose2d_dir: Path, streams: Mapping[str, Path], out_dir: Path,
                    fps: float, opts: OverlayOptions, frames: np.ndarray | None = None,
                    show_progress: bool = True) -> dict:
    """Write the overlay videos, the mosaic and the contact sheet; return a summary for viz.yaml.

    Args:
        rig: the calibrated cameras (all of them are drawn).
        pose: the 3D skeletons.
        pose2d_dir: folder of ``<cam>.npz`` (a missing folder or file means no detections).
        streams: camera -> capture stream path (cameras absent here get a neutral background).
        out_dir: the ``viz`` folder.
        fps: frame rate of the output videos.
        frames: positions into pose3d's frames to draw (default: all).
    """
    sel = np.arange(pose.num_frames) if frames is None else np.asarray(frames, dtype=np.int64)
    if sel.size == 0:
        log.warning("visualize: no frames to draw")
        return {}
    fnums = pose.frame_index[sel]
    joints = pose.joints[sel]
    limbs = pose.skeleton.limbs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # people absent in a frame
        err_person = np.nanmean(pose.reprojection_error_px[sel], axis=2)  # (S, P)
    cams = rig.names
    reproj = {c.name: c.project(joints) for c in rig.cameras}  # (S, P, J, 2) each, distorted px
    det = {c: load_pose2d_aligned(pose2d_dir / f"{c}.npz", fnums, pose.joints.shape[2]) for c in cams}
    no_det = [c for c in cams if det[c] is None]
    if no_det:
        log.info("visualize: no 2D keypoints for camera(s) %s; drawing reprojections only", ", ".join(no_det))
    sizes = {c.name: c.image_size for c in rig.cameras}
    out_sizes = {c: (max(2, int(round(sizes[c][0] * opts.scale))), max(2, int(round(sizes[c][1] * opts.scale))))
                 for c in cams}
    cols = grid_columns(len(cams))
    big = max(sizes.values(), key=lambda s: s[0] * s[1])
    tile = fit_size(big, max(64, opts.mosaic_max_width // cols))
    contact = set(pick_frames(np.isfinite(joints).all(-1).any(axis=(1, 2)), opts.contact_frames))
    thumbs: list[np.ndarray] = []
    thumb_labels: list[str] = []
    thumb_size = fit_size(big, opts.contact_tile_width) if opts.contact_tile_width < big[0] else big
    sources = {c: FrameSource(c, streams.get(c), sizes[c]) for c in cams}
    written: dict[str, object] = {"frames": int(sel.size), "cameras": list(cams),
                                  "cameras_with_video": [c for c in cams if sources[c].has_video]}
    try:
        with ExitStack() as stack:
            sinks = {}
            if opts.per_camera:
                for c in cams:
                    sinks[c] = stack.enter_context(VideoSink(out_dir / "overlay" / f"{c}.mp4", fps))
            mosaic = stack.enter_context(VideoSink(out_dir / "mosaic.mp4", fps)) if opts.mosaic else None
            for s in tqdm(range(sel.size), desc="overlays", unit="frame", disable=not show_progress):
                frame_imgs = []
                for c in cams:
                    img = sources[c].get(int(fnums[s]))
                    d = det[c][s] if det[c] is not None else None
                    draw_camera_frame(img, c, int(fnums[s]), d, reproj[c][s], err_person[s], limbs,
                                      opts.score_threshold)
                    if opts.per_camera:
                        sinks[c].write(img if opts.scale == 1.0
                                       else cv2.resize(img, out_sizes[c], interpolation=cv2.INTER_AREA))
                    frame_imgs.append(img)
                if mosaic is not None:
                    mosaic.write(tile_grid(frame_imgs, tile, cols))
                if s in contact:
                    for c, img in zip(cams, frame_imgs):
                        thumbs.append(tile_grid([img], thumb_size, 1))
                        thumb_labels.append(f"{c} #{int(fnums[s])}")
    finally:
        for src in sources.values():
            src.close()
    if opts.per_camera:
        written["overlays"] = [f"overlay/{c}.mp4" for c in cams]
    if opts.mosaic:
        written["mosaic"] = "mosaic.mp4"
    if thumbs:
        sheet = tile_grid(thumbs, thumb_size, len(cams), thumb_labels)
        write_png(out_dir / "contact_sheet.png", sheet)
        written["contact_sheet"] = "contact_sheet.png"
        written["contact_sheet_frames"] = sorted(int(fnums[s]) for s in contact)
    return written
