"""Read a synthetic session's ground truth back into typed objects."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import ArraySpec, read_npz, read_yaml
from pipeline.synth.camera import CameraModel
from pipeline.synth.mosaic import MosaicLayout
from pipeline.synth.rig import read_rig


@dataclass(frozen=True)
class GroundTruth:
    """Everything under ``OUT_DIR/ground_truth``.

    Attributes:
        cameras: name -> ground-truth camera (``rig.yaml``).
        mosaics: raw file path (relative to OUT_DIR) -> its layout (``mosaics.yaml``).
        recordings: raw file path -> ``{recording, fps, frame_count, timestamp_camera, start_time}``.
        boards: arrays of ``boards.npz``: ``object_points`` (N, 3), ``pose_<rec>_<cam>`` (F, 4, 4)
            board -> world, ``corners_<rec>_<cam>`` (F, N, 2) distorted px (NaN: off-image / back side).
        people: arrays of ``people.npz``: ``joints`` (T, P, 17, 3) m, ``uv_<cam>`` (T, P, 17, 2) px,
            ``visible_<cam>`` (T, P, 17) bool, ``frame_index`` (T,), ``heights_m`` (P,).
    """

    cameras: dict[str, CameraModel]
    mosaics: dict[str, MosaicLayout]
    recordings: dict[str, dict]
    boards: dict[str, np.ndarray]
    people: dict[str, np.ndarray]


def load_ground_truth(out_dir: str | os.PathLike) -> GroundTruth:
    """Load and check ``OUT_DIR/ground_truth`` written by ``posecap synth``."""
    gt = Path(out_dir) / "ground_truth"
    cameras = {c.name: c for c in read_rig(gt / "rig.yaml")}
    data = read_yaml(gt / "mosaics.yaml", "synth_mosaics@1")
    mosaics, recordings = {}, {}
    for path, m in data["files"].items():
        ts = m.get("timestamp_rect")
        mosaics[path] = MosaicLayout(tuple(m["frame_size"]), tuple(m["grid"]), tuple(m["cameras"]),
                                     tuple(tuple(r) for r in m["rects"]), None if ts is None else tuple(ts))
        keys = ("recording", "fps", "frame_count", "timestamp_camera", "start_time")
        recordings[path] = {k: m.get(k) for k in keys}
    boards = read_npz(gt / "boards.npz", {"object_points": ArraySpec(("N", 3))})
    specs = {"joints": ArraySpec(("T", "P", 17, 3)), "frame_index": ArraySpec(("T",), kind="iu")}
    for cam in cameras:
        specs[f"uv_{cam}"] = ArraySpec(("T", "P", 17, 2))
        specs[f"visible_{cam}"] = ArraySpec(("T", "P", 17), kind="b")
    people = read_npz(gt / "people.npz", specs)
    return GroundTruth(cameras, mosaics, recordings, boards, people)
