"""The static room: a tiled floor and four textured walls, ray-cast per camera.

Everything is procedural in world coordinates (no texture files): the floor is 0.5 m tiles with
grout lines and per-tile tint, the walls are painted panels with a skirting board and a few
posters. Each camera's background plate is rendered once and reused for every frame.
"""

from __future__ import annotations

import numpy as np

ROOM_HALF_M = 4.5
ROOM_HEIGHT_M = 3.2
FLOOR_TILE_M = 0.5
GROUT_M = 0.012


def _tile_hash(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer tile (vectorized)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float64) / 65536.0


def floor_color(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """(...) floor coordinates (metres) -> (..., 3) linear RGB albedo in [0, 1]."""
    fx, fy = x / FLOOR_TILE_M, y / FLOOR_TILE_M
    ix, iy = np.floor(fx), np.floor(fy)
    tint = _tile_hash(ix, iy, salt)
    base = np.array([0.62, 0.55, 0.45])
    col = base * (0.85 + 0.25 * tint[..., None])
    # Fine speckle so the floor has texture at every scale.
    speck = _tile_hash(np.floor(x / 0.03), np.floor(y / 0.03), salt + 1) - 0.5
    col = col * (1.0 + 0.12 * speck[..., None])
    gx = np.minimum(fx - ix, ix + 1 - fx) * FLOOR_TILE_M
    gy = np.minimum(fy - iy, iy + 1 - fy) * FLOOR_TILE_M
    grout = np.clip(np.minimum(gx, gy) / GROUT_M, 0.0, 1.0)
    return col * (0.45 + 0.55 * grout[..., None])


def wall_color(u: np.ndarray, z: np.ndarray, wall: int, salt: int) -> np.ndarray:
    """(...) wall coordinate along the wall and height (metres) -> (..., 3) albedo."""
    paints = np.array([[0.78, 0.80, 0.74], [0.70, 0.74, 0.80], [0.80, 0.76, 0.70], [0.74, 0.78, 0.76]])
    col = np.broadcast_to(paints[wall], u.shape + (3,)).copy()
    panel = _tile_hash(np.floor(u / 1.2), np.zeros_like(u), salt + 10 + wall)
    col *= (0.9 + 0.15 * panel[..., None])
    seam = np.abs(u / 1.2 - np.round(u / 1.2)) * 1.2 < 0.01
    col[seam] *= 0.7
    skirting = z < 0.12
    col[skirting] = [0.35, 0.30, 0.26]
    # Posters: one per 2.4 m of wall, random colours.
    pu = np.floor(u / 2.4)
    pc = u - (pu + 0.5) * 2.4
    has = _tile_hash(pu, np.full_like(pu, wall), salt + 20) > 0.35
    inside = has & (np.abs(pc) < 0.45) & (z > 1.2) & (z < 2.1)
    hue = np.stack([_tile_hash(pu, np.full_like(pu, k), salt + 30 + wall) for k in range(3)], axis=-1)
    stripes = (np.floor((z - 1.2) / 0.15) % 2)[..., None]
    poster = 0.15 + 0.7 * hue * (0.6 + 0.4 * stripes)
    return np.where(inside[..., None], poster, col)


def render_room(rays_world: np.ndarray, center_world: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the room.

    Args:
        rays_world: (H, W, 3) unit rays in the world frame.
        center_world: (3,) camera centre (inside the room).
        salt: texture variation seed.

    Returns:
        ``(rgb, depth)``: (H, W, 3) float32 shaded colour in [0, 1], (H, W) float32 ray distance.
    """
    c = np.asarray(center_world, float)
    d = rays_world
    best = np.full(d.shape[:-1], np.inf)
    rgb = np.zeros(d.shape, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Floor (z = 0) and ceiling (z = ROOM_HEIGHT_M).
        for plane_z, is_floor in ((0.0, True), (ROOM_HEIGHT_M, False)):
            t = (plane_z - c[2]) / d[..., 2]
            ok = (t > 0) & (t < best)
            px, py = c[0] + t * d[..., 0], c[1] + t * d[..., 1]
            if is_floor:
                col = floor_color(px, py, salt)
                # Soft pool of light in the middle of the room.
                r2 = (px ** 2 + py ** 2) / 9.0
                col = col * (0.75 + 0.35 * np.exp(-r2))[..., None]
            else:
                col = np.broadcast_to(np.array([0.85, 0.85, 0.83]), d.shape)
            rgb = np.where(ok[..., None], col, rgb)
            best = np.where(ok, t, best)
        for wall, (axis, sign) in enumerate(((0, 1.0), (1, 1.0), (0, -1.0), (1, -1.0))):
            t = (sign * ROOM_HALF_M - c[axis]) / d[..., axis]
            ok = (t > 0) & (t < best)
            other = 1 - axis
            u = c[other] + t * d[..., other]
            z = c[2] + t * d[..., 2]
            col = wall_color(u, z, wall, salt) * (0.8 + 0.1 * wall / 3.0)
            rgb = np.where(ok[..., None], col, rgb)
            best = np.where(ok, t, best)
    return rgb.astype(np.float32), best.astype(np.float32)
