"""People: COCO-17 skeletons with realistic proportions, walking, turning and swinging their arms.

Each person walks on a circle around the volume centre (so they turn continuously), in their own
direction, speed and gait phase; radii differ by >= 0.55 m so people never collide. Besides the
17 COCO joints the motion produces a few helper points (neck, head centre, toes, hands) that the
renderer needs to draw body parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
HELPERS = ("neck", "head", "left_toe", "right_toe", "left_hand", "right_hand", "pelvis", "chest",
           "left_torso_top", "right_torso_top", "left_torso_bottom", "right_torso_bottom")
POINTS = COCO17 + HELPERS
IDX = {name: i for i, name in enumerate(POINTS)}


@dataclass(frozen=True)
class PersonParams:
    """Body and motion of one person (metres, seconds, radians)."""

    height: float
    path_center: tuple[float, float]
    path_radius: float
    direction: float  # +1 counter-clockwise, -1 clockwise
    start_angle: float
    speed: float
    gait_phase: float
    arm_swing: float
    shirt: tuple[float, float, float]
    pants: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]


def sample_people(rng: np.random.Generator, count: int) -> list[PersonParams]:
    """Draw ``count`` (1–3) people with distinct, non-intersecting circular paths."""
    if not 1 <= count <= 3:
        raise ValueError(f"people count must be 1..3; got {count}")
    radii = 0.35 + 0.6 * np.arange(count) + rng.uniform(-0.05, 0.05, size=count)
    rng.shuffle(radii)
    shirts = [(0.75, 0.15, 0.12), (0.12, 0.35, 0.75), (0.15, 0.6, 0.25), (0.85, 0.7, 0.1), (0.55, 0.2, 0.6)]
    pants = [(0.12, 0.14, 0.25), (0.3, 0.25, 0.2), (0.15, 0.15, 0.15), (0.45, 0.42, 0.35)]
    skins = [(0.87, 0.68, 0.55), (0.65, 0.45, 0.32), (0.45, 0.3, 0.2), (0.93, 0.76, 0.64)]
    shirt_order = rng.permutation(len(shirts))
    out = []
    for p in range(count):
        out.append(PersonParams(
            height=float(rng.uniform(1.58, 1.9)),
            path_center=(float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))),
            path_radius=float(radii[p]),
            direction=float(rng.choice([-1.0, 1.0])),
            start_angle=float(rng.uniform(0, 2 * np.pi)),
            speed=float(rng.uniform(0.9, 1.3)),
            gait_phase=float(rng.uniform(0, 2 * np.pi)),
            arm_swing=float(rng.uniform(0.3, 0.6)),
            shirt=shirts[shirt_order[p]],
            pants=pants[int(rng.integers(len(pants)))],
            skin=skins[int(rng.integers(len(skins)))],
            hair=(0.08, 0.06, 0.05) if rng.random() < 0.7 else (0.45, 0.3, 0.15),
        ))
    return out


def _rot_z(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def person_points(person: PersonParams, times_s: np.ndarray) -> np.ndarray:
    """All body points of one person over time.

    Args:
        person: body and path.
        times_s: (T,) times in seconds.

    Returns:
        (T, len(POINTS), 3) world coordinates, metres (COCO-17 first, then ``HELPERS``).
    """
    t = np.asarray(times_s, float)
    H = person.height
    n = len(t)
    # Path: angle on the circle, heading = tangent.
    omega = person.direction * person.speed / person.path_radius
    ang = person.start_angle + omega * t
    pos = np.stack([person.path_center[0] + person.path_radius * np.cos(ang),
                    person.path_center[1] + person.path_radius * np.sin(ang)], -1)
    heading = ang + person.direction * np.pi / 2
    # Gait: one cycle per ~1.35 m travelled.
    phase = person.gait_phase + 2 * np.pi * (person.speed / (0.78 * H)) * t
    thigh, shank = 0.245 * H, 0.246 * H
    ankle_h = 0.039 * H
    hip_half, sh_half = 0.06 * H, 0.11 * H
    upper, fore = 0.186 * H, 0.146 * H
    local = np.zeros((n, len(POINTS), 3))

    def put(name: str, xyz: np.ndarray) -> None:
        local[:, IDX[name]] = xyz

    legs = {}
    for side, sgn, off in (("left", 1.0, 0.0), ("right", -1.0, np.pi)):
        ph = phase + off
        hip_a = np.deg2rad(22.0) * np.sin(ph)
        knee_flex = np.deg2rad(8.0 + 35.0 * np.clip(np.sin(ph + 1.9), 0.0, None))
        shank_a = hip_a - knee_flex
        knee_rel = np.stack([thigh * np.sin(hip_a), np.zeros(n), -thigh * np.cos(hip_a)], -1)
        ankle_rel = knee_rel + np.stack([shank * np.sin(shank_a), np.zeros(n), -shank * np.cos(shank_a)], -1)
        legs[side] = (sgn, knee_rel, ankle_rel)
    pelvis_z = ankle_h - np.minimum(legs["left"][2][:, 2], legs["right"][2][:, 2])
    pelvis = np.stack([np.zeros(n), np.zeros(n), pelvis_z], -1)
    put("pelvis", pelvis)
    sway = 0.015 * np.sin(phase)
    for side, (sgn, knee_rel, ankle_rel) in legs.items():
        hip = pelvis + np.stack([np.zeros(n), sgn * hip_half + sway, np.zeros(n)], -1)
        put(f"{side}_hip", hip)
        put(f"{side}_torso_bottom", pelvis + (hip - pelvis) * 0.8 + np.array([0.0, 0.0, 0.05 * H / 1.75]))
        put(f"{side}_knee", hip + knee_rel)
        put(f"{side}_ankle", hip + ankle_rel)
        put(f"{side}_toe", hip + ankle_rel + np.array([0.13 * H / 1.75, 0.0, -0.03]))
    lean = np.deg2rad(4.0)
    torso_len = (0.818 - 0.53) * H
    chest = pelvis + np.stack(
        [np.full(n, torso_len * np.sin(lean)), sway, np.full(n, torso_len * np.cos(lean))], -1)
    twist = np.deg2rad(6.0) * np.sin(phase)
    for side, sgn, off in (("left", 1.0, np.pi), ("right", -1.0, 0.0)):
        sh = chest + np.stack(
            [-sgn * sh_half * np.sin(twist), sgn * sh_half * np.cos(twist), np.zeros(n)], -1)
        put(f"{side}_shoulder", sh)
        put(f"{side}_torso_top", chest + (sh - chest) * 0.45 - np.array([0.0, 0.0, 0.06 * H / 1.75]))
        swing = person.arm_swing * np.sin(phase + off)
        flex = np.deg2rad(15.0) + 0.5 * np.clip(swing, 0.0, None)
        abd = np.deg2rad(7.0)
        elbow = sh + upper * np.stack([np.sin(swing), sgn * np.sin(abd) * np.ones(n), -np.cos(swing)], -1)
        fa = swing + flex
        wrist = elbow + fore * np.stack([np.sin(fa), sgn * np.sin(abd) * np.ones(n), -np.cos(fa)], -1)
        put(f"{side}_elbow", elbow)
        put(f"{side}_wrist", wrist)
        put(f"{side}_hand", wrist + 0.07 * H / 1.75 * np.stack([np.sin(fa), np.zeros(n), -np.cos(fa)], -1))
    put("chest", chest)
    neck = chest + np.array([0.0, 0.0, 0.04 * H])
    put("neck", neck)
    head = neck + np.array([0.01, 0.0, 0.075 * H])
    put("head", head)
    s = H / 1.75
    put("nose", head + s * np.array([0.105, 0.0, -0.01]))
    put("left_eye", head + s * np.array([0.085, 0.033, 0.02]))
    put("right_eye", head + s * np.array([0.085, -0.033, 0.02]))
    put("left_ear", head + s * np.array([-0.005, 0.09, 0.0]))
    put("right_ear", head + s * np.array([-0.005, -0.09, 0.0]))
    world = np.einsum("tij,tpj->tpi", _rot_z(heading), local)
    world[..., :2] += pos[:, None, :]
    return world


def people_points(people: list[PersonParams], num_frames: int, fps: float) -> np.ndarray:
    """(T, P, len(POINTS), 3) body points for every person over ``num_frames`` frames at ``fps``."""
    times = np.arange(num_frames) / fps
    return np.stack([person_points(p, times) for p in people], axis=1)
