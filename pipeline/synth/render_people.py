"""Ray-cast people as shaded capsules with a depth buffer, through the real (distorted) lens.

Every body part is a capsule (a segment swept by a sphere; a sphere when both ends coincide).
Rays are the camera's undistorted unit rays, so distortion is exact. Each capsule is intersected
only with the rays inside its projected bounding box, and the nearest hit wins, so people
occlude each other and themselves. The same depth/id buffers decide joint visibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synth.camera import CameraModel
from pipeline.synth.people import COCO17, IDX, PersonParams

# (point A, point B, radius at 1.75 m height, material)
PARTS: tuple[tuple[str, str, float, str], ...] = (
    ("left_hip", "right_hip", 0.085, "pants"),
    ("left_torso_bottom", "left_torso_top", 0.105, "shirt"),
    ("right_torso_bottom", "right_torso_top", 0.105, "shirt"),
    ("left_shoulder", "right_shoulder", 0.065, "shirt"),
    ("neck", "head", 0.045, "skin"),
    ("head", "head", 0.095, "skin"),
    ("left_shoulder", "left_elbow", 0.045, "shirt"),
    ("right_shoulder", "right_elbow", 0.045, "shirt"),
    ("left_elbow", "left_wrist", 0.036, "skin"),
    ("right_elbow", "right_wrist", 0.036, "skin"),
    ("left_wrist", "left_hand", 0.038, "skin"),
    ("right_wrist", "right_hand", 0.038, "skin"),
    ("left_hip", "left_knee", 0.07, "pants"),
    ("right_hip", "right_knee", 0.07, "pants"),
    ("left_knee", "left_ankle", 0.052, "pants"),
    ("right_knee", "right_ankle", 0.052, "pants"),
    ("left_ankle", "left_toe", 0.042, "shoes"),
    ("right_ankle", "right_toe", 0.042, "shoes"),
)
LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def joint_tolerance_m(points: np.ndarray, people: list[PersonParams]) -> np.ndarray:
    """(P, 17) how far in front of each joint a surface of the same person may be, the joint still visible.

    A joint inside body parts is hidden only by their own near surface: for every capsule that
    contains the joint (distance ``d`` to its axis below its radius ``r``) the surface lies at most
    ``r + d`` in front of it. Face points sit on the head; 2 cm are added for the sampling grid.

    Args:
        points: (P, len(POINTS), 3) body points of one frame.
    """
    joints = points[:, :len(COCO17)]
    tol = np.full(joints.shape[:2], 0.02)
    for p, person in enumerate(people):
        scale = person.height / 1.75
        for a, b, r, _ in PARTS:
            pa, pb, rad = points[p, IDX[a]], points[p, IDX[b]], r * scale
            ba = pb - pa
            denom = max(float(ba @ ba), 1e-12)
            h = np.clip(((joints[p] - pa) @ ba) / denom, 0.0, 1.0)
            d = np.linalg.norm(joints[p] - (pa + h[:, None] * ba), axis=1)
            inside = d < rad
            tol[p] = np.where(inside, np.maximum(tol[p], rad + d + 0.02), tol[p])
    return tol


def _materials(person: PersonParams) -> dict[str, np.ndarray]:
    return {"shirt": np.array(person.shirt), "pants": np.array(person.pants), "skin": np.array(person.skin),
            "shoes": np.array([0.1, 0.09, 0.08]), "hair": np.array(person.hair)}


@dataclass
class PeopleBuffers:
    """Per-sample results of ray-casting people into one camera (supersampled grid).

    Attributes:
        rgb: (H, W, 3) float32 shaded colour where ``person >= 0``.
        depth: (H, W) float32 ray distance of the nearest body surface (inf where none).
        person: (H, W) int16 person index of the nearest surface, -1 where none.
    """

    rgb: np.ndarray
    depth: np.ndarray
    person: np.ndarray


def _capsule_hit(ro: np.ndarray, rd: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                 r: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray/capsule intersection for one origin and many directions.

    Args:
        ro: (3,) ray origin. rd: (N, 3) unit directions. pa, pb: (3,) segment ends. r: radius.

    Returns:
        ``(t, normal)``: (N,) distance to the first hit (inf on miss), (N, 3) unit surface normals.
    """
    ba = pb - pa
    oa = ro - pa
    baba = float(ba @ ba)
    t = np.full(len(rd), np.inf)
    if baba > 1e-12:
        bard = rd @ ba
        baoa = float(ba @ oa)
        rdoa = rd @ oa
        oaoa = float(oa @ oa)
        a = baba - bard * bard
        b = baba * rdoa - baoa * bard
        c = baba * oaoa - baoa * baoa - r * r * baba
        h = b * b - a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            tc = (-b - np.sqrt(h)) / a
        y = baoa + tc * bard
        body = (h >= 0) & (a > 1e-12) & (y > 0) & (y < baba) & (tc > 0)
        t = np.where(body, tc, t)
    # End caps (and the whole shape when it is a sphere).
    for end in (pa, pb) if baba > 1e-12 else (pa,):
        oc = ro - end
        b2 = rd @ oc
        c2 = float(oc @ oc) - r * r
        h2 = b2 * b2 - c2
        with np.errstate(invalid="ignore"):
            ts = -b2 - np.sqrt(h2)
        ok = (h2 >= 0) & (ts > 0)
        t = np.where(ok & (ts < t), ts, t)
    p = ro + np.where(np.isfinite(t), t, 0.0)[:, None] * rd  # misses get a finite dummy point
    if baba > 1e-12:
        hseg = np.clip(((p - pa) @ ba) / baba, 0.0, 1.0)
        axis_pt = pa + hseg[:, None] * ba
    else:
        axis_pt = np.broadcast_to(pa, p.shape)
    return t, (p - axis_pt) / r


def _bbox(camera: CameraModel, pa: np.ndarray, pb: np.ndarray, r: float,
          supersample: int) -> tuple[int, int, int, int] | None:
    """Sample-grid bounding box ``(x0, y0, x1, y1)`` (exclusive ends) of a capsule, or None if off-image."""
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float) * r
    pts = np.concatenate([pa + corners, pb + corners])
    uv = camera.project(pts)
    w, h = camera.image_size
    s = supersample
    if np.isnan(uv).any():
        return 0, 0, w * s, h * s
    x0 = int(np.floor((uv[:, 0].min() - 2.0 + 0.5) * s))
    x1 = int(np.ceil((uv[:, 0].max() + 2.0 + 0.5) * s))
    y0 = int(np.floor((uv[:, 1].min() - 2.0 + 0.5) * s))
    y1 = int(np.ceil((uv[:, 1].max() + 2.0 + 0.5) * s))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w * s), min(y1, h * s)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def render_people(camera: CameraModel, rays_world: np.ndarray, points: np.ndarray,
                  people: list[PersonParams], supersample: int) -> PeopleBuffers:
    """Ray-cast every person of one frame into one camera.

    Args:
        camera: the lens.
        rays_world: (H*s, W*s, 3) unit rays in the world frame (``camera.pixel_rays_world(s)``).
        points: (P, len(POINTS), 3) body points of this frame, world metres.
        people: the P people (sizes and colours).
        supersample: ``s``.

    Returns:
        The buffers on the supersampled grid.
    """
    hs, ws = rays_world.shape[:2]
    depth = np.full((hs, ws), np.inf, np.float32)
    person_id = np.full((hs, ws), -1, np.int16)
    rgb = np.zeros((hs, ws, 3), np.float32)
    ro = camera.center_world
    for p, person in enumerate(people):
        mats = _materials(person)
        scale = person.height / 1.75
        parts = list(PARTS) + [("head", "head", 0.0, "hair")]
        for a, b, r, mat in parts:
            pa, pb = points[p, IDX[a]], points[p, IDX[b]]
            if mat == "hair":  # a cap of hair: a sphere shifted up and back from the head centre
                fwd = points[p, IDX["nose"]] - points[p, IDX["head"]]
                fwd[2] = 0.0
                fwd /= max(np.linalg.norm(fwd), 1e-9)
                pa = pb = points[p, IDX["head"]] + scale * (0.02 * np.array([0.0, 0.0, 1.0]) - 0.02 * fwd)
                r = 0.093
            rad = r * scale
            box = _bbox(camera, pa, pb, rad, supersample)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            rd = rays_world[y0:y1, x0:x1].reshape(-1, 3)
            t, normal = _capsule_hit(ro, rd, pa, pb, rad)
            t = t.reshape(y1 - y0, x1 - x0)
            win = t < depth[y0:y1, x0:x1]
            if not win.any():
                continue
            normal = normal.reshape(y1 - y0, x1 - x0, 3)
            lambert = np.clip(normal @ LIGHT_DIR, 0.0, None)
            facing = np.clip(-(normal * rays_world[y0:y1, x0:x1]).sum(-1), 0.0, None)
            shade = 0.28 + 0.5 * lambert + 0.3 * facing
            col = (mats[mat][None, None, :] * shade[..., None]).astype(np.float32)
            depth[y0:y1, x0:x1] = np.where(win, t, depth[y0:y1, x0:x1])
            person_id[y0:y1, x0:x1] = np.where(win, p, person_id[y0:y1, x0:x1])
            rgb[y0:y1, x0:x1] = np.where(win[..., None], col, rgb[y0:y1, x0:x1])
    return PeopleBuffers(rgb, depth, person_id)


def joint_visibility(camera: CameraModel, points: np.ndarray, buffers: PeopleBuffers,
                     people: list[PersonParams], supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Project COCO joints and decide which are visible.

    A joint is visible when it projects inside the image and the nearest body surface on its
    pixel's centre ray belongs to the same person, no nearer than that joint's tolerance
    (:func:`joint_tolerance_m`) in front of it.

    Args:
        points: (P, len(POINTS), 3) body points of this frame (COCO-17 first), world metres.

    Returns:
        ``(uv, visible)``: (P, 17, 2) distorted pixels (NaN behind the camera), (P, 17) bool.
    """
    joints = points[:, :len(COCO17)]
    uv = camera.project(joints)
    inside = camera.in_image(uv)
    s = supersample
    hs, ws = buffers.depth.shape
    # The supersample nearest the projected point.
    with np.errstate(invalid="ignore"):
        sx = np.clip(np.floor((np.nan_to_num(uv[..., 0]) + 0.5) * s), 0, ws - 1).astype(int)
        sy = np.clip(np.floor((np.nan_to_num(uv[..., 1]) + 0.5) * s), 0, hs - 1).astype(int)
    hit_depth = buffers.depth[sy, sx]
    hit_person = buffers.person[sy, sx]
    dist = np.linalg.norm(joints - camera.center_world, axis=-1)
    tol = joint_tolerance_m(points, people)
    own = hit_person == np.arange(len(people))[:, None]
    visible = inside & own & (hit_depth >= dist - tol)
    return uv, visible
