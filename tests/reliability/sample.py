"""A reduced copy of the committed sample session (``calib_data/``) for the reliability tests.

The capture take is cut to its first ``capture_frames`` frames (re-encoded, mp4v) and the config
turns the slowest optional work down (fewer intrinsic frames, no 3D render, small overlays), so
one uninterrupted ``posecap run`` takes about 15 s on two busy cores and still runs every stage.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from pipeline.artifacts import dump_yaml_text, load_yaml_file, write_bytes
from pipeline.demo import SAMPLE, deep_merge

FRAMES = {"intrinsics": 30, "extrinsics": 27, "capture": 24}
OVERRIDES = {
    "session_dir": "session",
    "crop": {"codec": "jpeg", "jpeg_quality": 90},
    "calibrate_intrinsics": {"stride": 2, "max_frames": 12, "workers": 1},
    "calibrate_extrinsics": {"max_nfev": 50, "outlier_rounds": 1, "workers": 1},
    "pose2d": {"backend": "topdown", "batch_frames": 8, "chunk_frames": 8, "threads": 1},
    "visualize": {"render3d": False, "mosaic": False, "overlay_scale": 0.5, "contact_sheet_frames": 2},
}


def cut_video(src: Path, dest: Path, frames: int) -> int:
    """Write the first ``frames`` frames of ``src`` to ``dest`` (mp4v); returns the frames written."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    written = 0
    try:
        while written < frames:
            ok, img = cap.read()
            if not ok:
                break
            if writer is None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (img.shape[1], img.shape[0]))
            writer.write(img)
            written += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return written


def make_sample(root: Path, frames: dict[str, int] | None = None, overrides: dict | None = None) -> Path:
    """Lay out a reduced sample under ``root`` (raw/ + posecap.yaml); returns the config path.

    ``frames`` maps a recording (``intrinsics``, ``extrinsics``, ``capture``) to the number of
    leading frames kept (default ``FRAMES``); the sample has 30, 54 and 60.
    """
    root.mkdir(parents=True, exist_ok=True)
    keep = {**FRAMES, **(frames or {})}
    for rec, count in keep.items():
        for name in ("quad.mp4", "stereo.mp4"):
            cut_video(SAMPLE / "raw" / rec / name, root / "raw" / rec / name, count)
    config = deep_merge(load_yaml_file(SAMPLE / "posecap.yaml"), deep_merge(OVERRIDES, overrides or {}))
    path = root / "posecap.yaml"
    write_bytes(path, dump_yaml_text(config).encode())
    return path
