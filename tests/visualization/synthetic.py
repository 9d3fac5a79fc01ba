"""Small synthetic sessions for the visualize and export tests: a rig, walking people with rigid
bones, their 2D keypoints, and optionally capture streams with session.yaml."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.artifacts import write_npz, write_yaml
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig
from pipeline.skeleton import COCO17

SIZE = (320, 240)

# Rest pose in a body frame (x = the person's left, y = forward, z = up), metres.
REST = {
    "nose": (0.0, 0.10, 1.62), "left_eye": (0.035, 0.08, 1.66), "right_eye": (-0.035, 0.08, 1.66),
    "left_ear": (0.075, 0.0, 1.63), "right_ear": (-0.075, 0.0, 1.63),
    "left_shoulder": (0.18, 0.0, 1.45), "right_shoulder": (-0.18, 0.0, 1.45),
    "left_elbow": (0.20, 0.0, 1.17), "right_elbow": (-0.20, 0.0, 1.17),
    "left_wrist": (0.21, 0.02, 0.92), "right_wrist": (-0.21, 0.02, 0.92),
    "left_hip": (0.10, 0.0, 0.95), "right_hip": (-0.10, 0.0, 0.95),
    "left_knee": (0.10, 0.02, 0.52), "right_knee": (-0.10, 0.02, 0.52),
    "left_ankle": (0.10, 0.0, 0.09), "right_ankle": (-0.10, 0.0, 0.09),
}  # fmt: skip
MID_HIP = np.array([0.0, 0.0, 0.95])
MID_SHOULDER = np.array([0.0, 0.0, 1.45])

# (segment, pivot point, member joints, parent segment); pivots "mid_hip" / "mid_shoulder" are virtual.
SEGMENTS = (
    ("pelvis", "mid_hip", ("left_hip", "right_hip"), None),
    ("torso", "mid_hip", ("left_shoulder", "right_shoulder"), "pelvis"),
    ("head", "mid_shoulder", ("nose", "left_eye", "right_eye", "left_ear", "right_ear"), "torso"),
    ("l_upper_arm", "left_shoulder", ("left_elbow",), "torso"),
    ("l_forearm", "left_elbow", ("left_wrist",), "l_upper_arm"),
    ("r_upper_arm", "right_shoulder", ("right_elbow",), "torso"),
    ("r_forearm", "right_elbow", ("right_wrist",), "r_upper_arm"),
    ("l_thigh", "left_hip", ("left_knee",), "pelvis"),
    ("l_shin", "left_knee", ("left_ankle",), "l_thigh"),
    ("r_thigh", "right_hip", ("right_knee",), "pelvis"),
    ("r_shin", "right_knee", ("right_ankle",), "r_thigh"),
)


def _rest(name: str) -> np.ndarray:
    if name == "mid_hip":
        return MID_HIP
    if name == "mid_shoulder":
        return MID_SHOULDER
    return np.asarray(REST[name], dtype=np.float64)


def articulated_people(T: int, P: int, seed: int = 0, amplitude: float = 0.6) -> np.ndarray:
    """People walking with every bone rigid: (T, P, 17, 3) metres, world Z up.

    Each segment turns about its pivot by a smooth random rotation (relative to its parent);
    the whole body yaws and walks. Every distance within a segment (and every bone) is constant.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 30.0
    out = np.zeros((T, P, 17, 3))
    for p in range(P):
        start = np.array([-0.6 + 1.2 * p, -0.3 * p, 0.0])
        heading = rng.uniform(-np.pi, np.pi)
        vel = 0.8 * np.array([np.cos(heading), np.sin(heading), 0.0])
        freq = {s[0]: rng.uniform(0.5, 1.5, size=3) for s in SEGMENTS}
        phase = {s[0]: rng.uniform(0, 2 * np.pi, size=3) for s in SEGMENTS}
        for k in range(T):
            G: dict[str, np.ndarray] = {}
            pos: dict[str, np.ndarray] = {}
            yaw = Rotation.from_euler("z", heading - np.pi / 2 + 0.3 * np.sin(t[k])).as_matrix()
            root = start + vel * t[k]
            pos["mid_hip"] = root + MID_HIP
            for seg, pivot, members, parent in SEGMENTS:
                gain = 0.3 if seg in ("pelvis", "torso") else 1.0
                rv = gain * amplitude * np.sin(2 * np.pi * freq[seg] * t[k] + phase[seg])
                local = Rotation.from_rotvec(rv).as_matrix()
                G[seg] = (yaw if parent is None else G[parent]) @ local
                base = pos[pivot]
                for m in members:
                    pos[m] = base + G[seg] @ (_rest(m) - _rest(pivot))
                if seg == "torso":
                    pos["mid_shoulder"] = base + G[seg] @ (MID_SHOULDER - MID_HIP)
            out[k, p] = [pos[n] for n in COCO17.joint_names]
    return out


def make_rig(size: tuple[int, int] = SIZE, n: int = 3) -> Rig:
    """``n`` cameras on a 4 m circle, 2 m high, looking at (0, 0, 1); world Z up (a floor frame)."""
    w, h = size
    cams = []
    for i in range(n):
        ang = 2 * np.pi * i / n + 0.3
        eye = np.array([4.0 * np.cos(ang), 4.0 * np.sin(ang), 2.0])
        z = np.array([0.0, 0.0, 1.0]) - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        K = np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1]])
        cams.append(Camera(f"cam{i}", size, K, np.array([-0.05, 0.01, 0.0, 0.0, 0.0]), R, -R @ eye))
    return Rig(tuple(cams), world="floor")


def write_session(root: Path, T: int = 12, P: int = 2, size: tuple[int, int] = SIZE, streams: bool = False,
                  pose2d: bool = True, seed: int = 0, rms: float | None = 0.4) -> tuple[Rig, np.ndarray]:
    """Write calib/rig.yaml, pose3d/, and optionally pose2d/ and streams/ + session.yaml under ``root``.

    Stream frame ``f`` of every camera is a flat grey of level ``10 * f`` (to check alignment).
    Returns the rig and the joints (T, P, 17, 3).
    """
    rig = make_rig(size)
    extra = {c: {"reprojection_rms_px": rms} for c in rig.names} if rms is not None else None
    rig.save(root / "calib" / "rig.yaml", extra)
    joints = articulated_people(T, P, seed)
    fi = np.arange(T, dtype=np.int64) + 3  # pose frames are stream frames 3 .. T + 2
    err = np.full((T, P, 17), 1.25, np.float32)
    views = np.full((T, P, 17), 3, np.int16)
    write_npz(root / "pose3d" / "skeletons.npz", joints=joints.astype(np.float32), reprojection_error_px=err,
              views_used=views, frame_index=fi)
    write_yaml(root / "pose3d" / "pose3d.yaml", {"units": "m", "skeleton": "coco17",
                                                  "joint_names": list(COCO17.joint_names), "cameras": rig.names,
                                                  "frames": T, "settings": {"fps": 30.0}}, "pose3d@1")
    if pose2d:
        rng = np.random.default_rng(seed + 1)
        for cam in rig.cameras:
            uv = cam.project(joints) + rng.normal(scale=1.0, size=joints.shape[:-1] + (2,))
            kp = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9)], axis=-1)
            kp = kp[:, ::-1].copy()  # 2D slots are detections, not identities
            write_npz(root / "pose2d" / f"{cam.name}.npz", keypoints=kp.astype(np.float32), frame_index=fi)
    if streams:
        cams_yaml = {}
        for cam in rig.cameras:
            path = root / "streams" / f"{cam.name}.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
            for f in range(T + 5):
                wr.write(np.full((size[1], size[0], 3), min(250, 10 * f), np.uint8))
            wr.release()
            cams_yaml[cam.name] = {"stream": f"streams/{cam.name}.avi", "image_size": list(size), "fps": 25.0,
                                   "frame_count": T + 5}
        write_yaml(root / "session.yaml", {"cameras": rig.names, "stereo_pairs": [],
                                           "recordings": {"capture": {"kind": "capture", "cameras": cams_yaml}}},
                   "session@1")
    return rig, joints


def run_stage(stage, session: Path, overrides: dict | None = None):
    """Run one stage through the engine (forced) with its params overridden; returns the RunReport."""
    from pipeline.config import Config, from_mapping
    from pipeline.runner import Runner

    params = from_mapping(stage.params_type, overrides or {}, "<test>")
    config = Config(sections={stage.name: params}, session_dir=session)
    runner = Runner([stage], config, session, show_progress=False)
    return runner.run(force=[stage.name], only=stage.name)
