"""Synthetic unsynchronized sessions for the sync tests, without rendering video.

The committed sample's ground-truth rig (a quad DVR cam0..cam3 and a stereo pair) watches people
walking as the synthetic generator moves them (:func:`pipeline.synth.people.person_points`, which
takes any time, so each clock samples the same motion at its own instants). Each camera's 2D
keypoints are the projections plus Gaussian noise, outside the image removed, person slots
shuffled per frame (slots are detections, not identities), written as ``pose2d/<cam>.npz`` next
to ``calib/rig.yaml`` and a ``session.yaml`` whose sources give the clock groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_npz, write_yaml
from pipeline.geometry.rig import Rig
from pipeline.synth.people import COCO17, PersonParams, person_points, sample_people

ROOT = Path(__file__).resolve().parents[2]
GT_RIG = ROOT / "calib_data" / "ground_truth" / "rig.yaml"
QUAD = ("cam0", "cam1", "cam2", "cam3")
STEREO = ("stereo_l", "stereo_r")


@dataclass(frozen=True)
class Take:
    """What was written, with the truth: joints at the reference (quad) frames."""

    session: Path
    rig: Rig
    people: list[PersonParams]
    quad_times_s: np.ndarray
    joints: np.ndarray  # (T, P, 17, 3) at the quad frames
    stereo_offset_s: float
    stereo_fps: float


def joints_at(people: list[PersonParams], times_s: np.ndarray) -> np.ndarray:
    """(N, P, 17, 3) COCO joints of every person at ``times_s``."""
    return np.stack([person_points(p, times_s) for p in people], axis=1)[:, :, :len(COCO17)]


def _keypoints(rig: Rig, cam: str, joints: np.ndarray, rng: np.random.Generator, noise_px: float) -> np.ndarray:
    uv = rig.subset([cam]).project(joints)[0]  # (T, P, J, 2)
    uv = uv + rng.normal(0.0, noise_px, uv.shape)
    w, h = rig.camera(cam).image_size
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    kp = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], axis=-1)
    kp[~inside] = [np.nan, np.nan, 0.0]
    order = np.argsort(rng.random(kp.shape[:2]), axis=1)  # shuffle the slots every frame
    return np.take_along_axis(kp, order[:, :, None, None], axis=1).astype(np.float32)


def make_take(session: Path, *, seconds: float = 8.0, fps: float = 30.0, stereo_fps: float = 30.0,
              stereo_offset_s: float = 0.0, people: int = 2, seed: int = 0, noise_px: float = 0.7,
              stereo_rate: float = 1.0, still: bool = False,
              session_offsets: dict[str, float] | None = None) -> Take:
    """Write ``calib/rig.yaml``, ``session.yaml`` and ``pose2d/<cam>.npz`` for one capture take.

    The stereo camera's frame k is at quad time ``stereo_offset_s + stereo_rate * k / stereo_fps``. ``still``
    freezes the people (no motion to synchronize on). ``session_offsets`` sets the sources'
    configured ``time_offset_s`` (keys ``quad``/``stereo``).
    """
    rng = np.random.default_rng(seed)
    rig = Rig.load(GT_RIG)
    persons = sample_people(np.random.default_rng(seed + 100), people)
    n_quad = int(round(seconds * fps))
    quad_t = np.arange(n_quad) / fps
    stereo_t = stereo_offset_s + stereo_rate * np.arange(int(round(seconds * stereo_fps))) / stereo_fps
    if still:
        quad_t, stereo_t = np.zeros_like(quad_t), np.zeros_like(stereo_t)
    truth = joints_at(persons, quad_t)
    session.mkdir(parents=True, exist_ok=True)
    rig.save(session / "calib" / "rig.yaml")
    offsets = session_offsets or {}
    cams = {}
    for group, names, times, rate in (("quad", QUAD, quad_t, fps), ("stereo", STEREO, stereo_t, stereo_fps)):
        joints = joints_at(persons, times)
        for cam in names:
            kp = _keypoints(rig, cam, joints, rng, noise_px)
            write_npz(session / "pose2d" / f"{cam}.npz", keypoints=kp,
                      frame_index=np.arange(kp.shape[0], dtype=np.int64))
            w, h = rig.camera(cam).image_size
            cams[cam] = {"stream": f"streams/{cam}.mkv", "source": f"raw/capture/{group}.avi",
                         "crop_rect": [0, 0, w, h], "image_size": [w, h], "fps": float(rate),
                         "frame_count": int(kp.shape[0]), "time_offset_s": float(offsets.get(group, 0.0)),
                         "truncated_at_frame": None}
    write_yaml(session / "session.yaml", {
        "cameras": list(cams), "stereo_pairs": [list(STEREO)],
        "recordings": {"capture": {"kind": "capture", "cameras": cams}},
    }, "session@1")
    return Take(session, rig, persons, quad_t, truth, stereo_offset_s, stereo_fps)
