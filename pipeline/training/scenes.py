"""Random training scenes drawn with the synthetic renderer: people, camera, lens, room, sensor.

The session renderer (``pipeline.synth``) draws people walking on circles, seen by a fixed rig.
Training needs more variety, so a scene here draws, from one seeded generator:

- 1-6 people (:func:`sample_person`) with random height, clothing and skin colours, placed at
  random on the floor with random headings and gait phases, some with raised, bent or swung
  arms and legs (:func:`pose_variation`: rotations of the limb chains about their roots);
- a camera anywhere in the room at 0.6-3 m height, aimed near a person or the group, with a
  random horizontal field of view, principal point and OpenCV distortion
  (:func:`pipeline.synth.rig.sample_intrinsics`) and a small roll;
- the room plate with a random texture salt and an exposure, vignetting, blur and noise draw.

Rendering reuses ``pipeline.synth`` (capsule ray casting, joint visibility, room ray casting),
so people occlude each other and leave the frame exactly as in the synthetic sessions.

Shapes: an image is (h, w, 3) uint8 RGB; ``uv`` (P, 17, 2) distorted pixels (NaN behind the
camera); ``visible`` (P, 17) bool (in frame and not occluded); ``in_frame`` (P, 17) bool;
``area`` (P,) float32 the visible silhouette of each person in pixels (COCO's segment area).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.synth.camera import CameraModel, look_at
from pipeline.synth.people import IDX, PersonParams, person_points
from pipeline.synth.render import _downsample
from pipeline.synth.render_people import joint_visibility, render_people
from pipeline.synth.rig import sample_intrinsics
from pipeline.synth.room import ROOM_HALF_M, render_room

__all__ = ["RenderedScene", "pose_variation", "render_scene", "sample_person", "sample_points"]

SKINS = ((0.87, 0.68, 0.55), (0.65, 0.45, 0.32), (0.45, 0.3, 0.2), (0.93, 0.76, 0.64), (0.78, 0.57, 0.42))
# Limb chains rotated as one piece about their first point: (root, moved points).
ARM_CHAINS = {side: (f"{side}_shoulder", (f"{side}_elbow", f"{side}_wrist", f"{side}_hand"))
              for side in ("left", "right")}
FOREARM_CHAINS = {side: (f"{side}_elbow", (f"{side}_wrist", f"{side}_hand")) for side in ("left", "right")}
LEG_CHAINS = {side: (f"{side}_hip", (f"{side}_knee", f"{side}_ankle", f"{side}_toe")) for side in ("left", "right")}
SHIN_CHAINS = {side: (f"{side}_knee", (f"{side}_ankle", f"{side}_toe")) for side in ("left", "right")}


@dataclass(frozen=True)
class RenderedScene:
    """One rendered image with its people's joints (see the module docstring for shapes)."""

    image: np.ndarray
    uv: np.ndarray
    visible: np.ndarray
    in_frame: np.ndarray
    area: np.ndarray


def sample_person(rng: np.random.Generator) -> PersonParams:
    """A person with random body, gait and colours (its path is replaced by :func:`sample_points`)."""
    shirt = rng.uniform(0.05, 0.95, size=3)
    pants = rng.uniform(0.05, 0.7, size=3) * rng.uniform(0.4, 1.0)
    skin = np.asarray(SKINS[int(rng.integers(len(SKINS)))]) * rng.uniform(0.85, 1.1)
    hair = (0.08, 0.06, 0.05) if rng.random() < 0.6 else tuple(rng.uniform(0.1, 0.6, size=3) * (1.0, 0.7, 0.4))
    return PersonParams(
        height=float(rng.uniform(1.5, 1.95)), path_center=(0.0, 0.0), path_radius=1.0, direction=1.0,
        start_angle=0.0, speed=float(rng.uniform(0.0, 1.4)), gait_phase=float(rng.uniform(0, 2 * np.pi)),
        arm_swing=float(rng.uniform(0.1, 0.7)), shirt=tuple(float(c) for c in shirt),
        pants=tuple(float(c) for c in pants), skin=tuple(float(c) for c in np.clip(skin, 0, 1)),
        hair=tuple(float(c) for c in hair))


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / max(np.linalg.norm(axis), 1e-12)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _rotate_chain(points: np.ndarray, root: str, moved: tuple[str, ...], rot: np.ndarray) -> None:
    origin = points[IDX[root]]
    idx = [IDX[m] for m in moved]
    points[idx] = (points[idx] - origin) @ rot.T + origin


def pose_variation(rng: np.random.Generator, points: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Random limb poses beyond walking: arms raised or reached out, elbows and knees bent, a leg lifted.

    Args:
        points: (len(POINTS), 3) one person's body points (world metres); not modified.
        strength: 0 keeps the walking pose; 1 gives the full range.

    Returns:
        (len(POINTS), 3) the posed points. Limb lengths are kept (rigid rotations of each chain).
    """
    out = points.copy()
    if strength <= 0:
        return out
    for side in ("left", "right"):
        if rng.random() < 0.6 * strength:
            root, moved = ARM_CHAINS[side]
            angle = rng.uniform(-1.0, 2.6) * strength
            _rotate_chain(out, root, moved, _rodrigues(rng.normal(size=3), angle))
        if rng.random() < 0.5 * strength:
            root, moved = FOREARM_CHAINS[side]
            _rotate_chain(out, root, moved, _rodrigues(rng.normal(size=3), rng.uniform(-2.0, 2.0) * strength))
    if rng.random() < 0.25 * strength:
        side = "left" if rng.random() < 0.5 else "right"
        root, moved = LEG_CHAINS[side]
        _rotate_chain(out, root, moved, _rodrigues(rng.normal(size=3) * (1, 1, 0.2), rng.uniform(0.2, 1.0) * strength))
        root, moved = SHIN_CHAINS[side]
        _rotate_chain(out, root, moved, _rodrigues(rng.normal(size=3) * (1, 1, 0.2), rng.uniform(0.0, 1.2) * strength))
    return out


def sample_points(rng: np.random.Generator, people: list[PersonParams], spread_m: float,
                  pose_strength: float) -> np.ndarray:
    """(P, len(POINTS), 3) body points: each person at a random floor spot and heading, mid-stride.

    People stand at least 0.5 m apart (best effort) within ``spread_m`` of the origin.
    """
    out = []
    spots: list[np.ndarray] = []
    for person in people:
        for _ in range(20):
            xy = rng.uniform(-spread_m, spread_m, size=2)
            if all(np.linalg.norm(xy - s) > 0.5 for s in spots):
                break
        spots.append(xy)
        t = rng.uniform(0.0, 3.0)
        pts = person_points(person, np.array([t]))[0]
        base = pts[IDX["pelvis"]].copy()
        base[2] = 0.0
        heading = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(heading), np.sin(heading)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        pts = (pts - base) @ rz.T + np.array([xy[0], xy[1], 0.0])
        out.append(pose_variation(rng, pts, pose_strength))
    return np.stack(out)


def _camera(rng: np.random.Generator, target: np.ndarray, image_size: tuple[int, int], distance: float,
            hfov_deg: tuple[float, float]) -> CameraModel:
    """A camera ``distance`` m from ``target`` (horizontally), inside the room, looking at it."""
    for _ in range(50):
        ang = rng.uniform(0, 2 * np.pi)
        height = rng.uniform(0.6, 2.9)
        center = np.array([target[0] + distance * np.cos(ang), target[1] + distance * np.sin(ang), height])
        if np.abs(center[:2]).max() < ROOM_HALF_M - 0.2:
            break
    else:
        center = np.array([0.0, -ROOM_HALF_M + 0.3, height])
    K, dist = sample_intrinsics(rng, image_size, hfov_deg)
    R = look_at(center, target, roll_rad=float(rng.normal(0.0, 0.06)))
    return CameraModel("train", tuple(image_size), K, dist, R, -R @ center)


def render_scene(rng: np.random.Generator, image_size: tuple[int, int], num_people: int, *,
                 focus: str = "person", supersample: int = 2, spread_m: float = 1.6,
                 pose_strength: float = 0.7) -> RenderedScene:
    """Draw and render one scene.

    Args:
        rng: the only source of randomness.
        image_size: [w, h] of the rendered image.
        num_people: P >= 1.
        focus: "person": the camera frames person 0 tightly (a top-down crop; the others stand
            around it, in front or behind); "group": the camera frames the whole group (bottom-up).
        supersample: ray samples per pixel side.
        spread_m: people stand within this distance of the origin (per axis).
        pose_strength: scale of :func:`pose_variation`.
    """
    w, h = image_size
    people = [sample_person(rng) for _ in range(num_people)]
    points = sample_points(rng, people, spread_m, pose_strength)
    if focus == "person":
        pts = points[0]
        target = pts[:, :].mean(axis=0) + rng.normal(0.0, 0.08, size=3)
        extent = max(np.ptp(pts[:, 2]), 0.5 * np.ptp(pts[:, 0]), 0.5 * np.ptp(pts[:, 1]), 0.8)
        distance = rng.uniform(1.6, 5.0)
        # Vertical field of view so that the person fills about 1 / 1.25 of the crop height.
        vfov = 2 * np.arctan(extent * rng.uniform(1.1, 1.5) / 2 / distance)
        hfov = np.rad2deg(2 * np.arctan(np.tan(vfov / 2) * w / h))
        hfov_range = (hfov * 0.97, hfov * 1.03)
    else:
        target = np.array([*rng.uniform(-0.4, 0.4, size=2), rng.uniform(0.6, 1.2)])
        distance = rng.uniform(2.0, 3.8)
        hfov_range = (50.0, 72.0)
    # Rotate people about the target so the camera need not move (keeps it inside the room).
    camera = _camera(rng, target, (w, h), distance, hfov_range)
    rays = camera.pixel_rays_world(supersample)
    plate, _ = render_room(rays, camera.center_world, salt=int(rng.integers(1, 10_000)))
    plate = plate * rng.uniform(0.6, 1.3, size=3).astype(np.float32) ** 0.5
    buffers = render_people(camera, rays, points, people, supersample)
    mask = buffers.person >= 0
    rgb = _downsample(np.where(mask[..., None], buffers.rgb, plate).astype(np.float32), supersample)
    uv, visible = joint_visibility(camera, points, buffers, people, supersample)
    in_frame = camera.in_image(uv)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    gain = rng.uniform(0.75, 1.2) * (1.0 - rng.uniform(0.0, 0.35) * r2 / 2.0)
    img = rgb * gain[..., None] * 255.0
    blur = rng.uniform(0.3, 1.0)
    img = cv2.GaussianBlur(img, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.5, 4.0))
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ids = buffers.person[buffers.person >= 0]
    area = np.bincount(ids, minlength=num_people)[:num_people] / float(supersample**2)
    return RenderedScene(image, uv.astype(np.float32), visible, in_frame, area.astype(np.float32))
