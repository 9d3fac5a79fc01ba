"""A calibrated multi-camera rig: ``calib/rig.yaml`` (schema ``posecap/rig@1``) in and out.

Rig-level functions work on all cameras at once: arrays with a leading camera axis ``C`` in the
rig's camera order, with the per-camera parameters broadcast, so no Python loop runs per camera.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.errors import ArtifactError
from pipeline.geometry.camera import Camera, cam_to_pixels, pad_dist

RIG_SCHEMA = "rig@1"


@dataclass(frozen=True, eq=False)
class Rig:
    """Cameras in a fixed order plus how the world frame was chosen.

    Attributes:
        cameras: the cameras, in rig order (the ``C`` axis of every rig-level array).
        world: name of the world frame (``cam0``, ``floor_board``, ...).
        units: length unit of ``t`` and of triangulated points; always ``"m"``.
    """

    cameras: tuple[Camera, ...]
    world: str = "cam0"
    units: str = "m"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"rig camera names must be unique; got {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> Camera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"camera {name!r} not in rig (cameras: {', '.join(self.names)})")

    def subset(self, names: Sequence[str]) -> Rig:
        """A rig with only ``names``, in that order."""
        return Rig(tuple(self.camera(n) for n in names), world=self.world, units=self.units)

    # ---- stacked parameters -------------------------------------------------------------

    @cached_property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard symbol
        """(C, 3, 3) intrinsics."""
        return np.stack([c.K for c in self.cameras])

    @cached_property
    def dist8(self) -> np.ndarray:
        """(C, 8) distortion, zero padded."""
        return np.stack([c.dist8 for c in self.cameras])

    @cached_property
    def R(self) -> np.ndarray:  # noqa: N802
        """(C, 3, 3) world -> camera rotations."""
        return np.stack([c.R for c in self.cameras])

    @cached_property
    def t(self) -> np.ndarray:
        """(C, 3) world -> camera translations, metres."""
        return np.stack([c.t for c in self.cameras])

    @cached_property
    def projections(self) -> np.ndarray:
        """(C, 3, 4) ``[R | t]`` projections to undistorted normalized coordinates."""
        return np.concatenate([self.R, self.t[:, :, None]], axis=2)

    @cached_property
    def focal_px(self) -> np.ndarray:
        """(C,) mean focal length per camera, pixels."""
        return 0.5 * (self.K[:, 0, 0] + self.K[:, 1, 1])

    @cached_property
    def centers(self) -> np.ndarray:
        """(C, 3) camera centres in the world frame."""
        return -np.einsum("cji,cj->ci", self.R, self.t)

    # ---- batched geometry ---------------------------------------------------------------

    def _bcast(self, arr: np.ndarray, batch_ndim: int) -> np.ndarray:
        return arr.reshape(arr.shape[:1] + (1,) * batch_ndim + arr.shape[1:])

    def world_to_cam(self, points_world: np.ndarray) -> np.ndarray:
        """Points (..., 3) in the world -> (C, ..., 3) in each camera's frame."""
        points_world = np.asarray(points_world, dtype=np.float64)
        if points_world.shape[-1] != 3:
            raise ValueError(f"points_world must have shape (..., 3); got {points_world.shape}")
        nb = points_world.ndim - 1
        flat = points_world.reshape(-1, 3) if nb else points_world.reshape(1, 3)
        pc = np.einsum("cij,nj->cni", self.R, flat) + self.t[:, None, :]
        return pc.reshape((len(self),) + points_world.shape)

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """Project world points (..., 3), metres, into every camera: -> (C, ..., 2) distorted px.

        NaN in, NaN out; points behind a camera give NaN in that camera.
        """
        pc = self.world_to_cam(points_world)
        nb = pc.ndim - 2
        return cam_to_pixels(pc, self._bcast(self.K, nb), self._bcast(self.dist8, nb))

    def undistort_points(self, uv_px: np.ndarray) -> np.ndarray:
        """Distorted pixels (C, ..., 2) -> undistorted normalized coordinates (C, ..., 2)."""
        uv_px = np.asarray(uv_px, dtype=np.float64)
        if uv_px.ndim < 2 or uv_px.shape[0] != len(self) or uv_px.shape[-1] != 2:
            raise ValueError(f"uv_px must have shape ({len(self)}, ..., 2); got {uv_px.shape}")
        return np.stack([cam.undistort_points(uv_px[c]) for c, cam in enumerate(self.cameras)])

    # ---- file I/O -----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> Rig:
        """Read ``calib/rig.yaml``; raise a one-line ArtifactError naming the field on any fault."""
        p = Path(path)
        data = read_yaml(p, RIG_SCHEMA)
        units = data.get("units", "m")
        if units != "m":
            raise ArtifactError(f"{p}: field 'units' is {units!r}; expected 'm'")
        world = data.get("world", "cam0")
        cams = data.get("cameras")
        if not isinstance(cams, dict) or not cams:
            raise ArtifactError(
                f"{p}: field 'cameras' must be a non-empty mapping of camera name -> parameters"
            )
        return cls(tuple(_camera_from_yaml(p, str(name), spec) for name, spec in cams.items()),
                   world=str(world), units="m")

    def save(self, path: str | os.PathLike, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """Write ``calib/rig.yaml`` atomically. ``extra[name]`` adds per-camera fields (e.g. rms)."""
        cams: dict[str, Any] = {}
        for c in self.cameras:
            entry: dict[str, Any] = {
                "image_size": list(c.image_size),
                "K": c.K.tolist(),
                "dist": c.dist.tolist(),
                "R": c.R.tolist(),
                "t": c.t.tolist(),
            }
            entry.update((extra or {}).get(c.name, {}))
            cams[c.name] = entry
        write_yaml(path, {"units": self.units, "world": self.world, "cameras": cams}, RIG_SCHEMA)


def _matrix(p: Path, cam: str, key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    where = f"{p}: camera '{cam}' field '{key}'"
    if value is None:
        raise ArtifactError(f"{where} missing; expected a {'x'.join(map(str, shape))} list of numbers")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArtifactError(f"{where} is not a list of numbers: {value!r}") from None
    if arr.shape != shape:
        raise ArtifactError(f"{where} has shape {list(arr.shape)}; expected {list(shape)}")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{where} contains NaN or inf")
    return arr


def _camera_from_yaml(p: Path, name: str, spec: Any) -> Camera:
    if not isinstance(spec, dict):
        raise ArtifactError(f"{p}: camera '{name}' must be a mapping of parameters")
    size = _matrix(p, name, "image_size", spec.get("image_size"), (2,))
    if np.any(size <= 0) or np.any(size != np.round(size)):
        raise ArtifactError(f"{p}: camera '{name}' field 'image_size' must be two positive integers [w, h]")
    K = _matrix(p, name, "K", spec.get("K"), (3, 3))
    if abs(np.linalg.det(K)) < 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ArtifactError(f"{p}: camera '{name}' field 'K' is singular or has non-positive focal lengths")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
        raise ArtifactError(f"{p}: camera '{name}' field 'K' must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
    dist_raw = spec.get("dist", [0.0, 0.0, 0.0, 0.0, 0.0])
    try:
        dist = np.asarray(dist_raw, dtype=np.float64).reshape(-1)
        pad_dist(dist)
    except (TypeError, ValueError):
        raise ArtifactError(
            f"{p}: camera '{name}' field 'dist' must hold 4, 5 or 8 numbers (OpenCV order); got {dist_raw!r}"
        ) from None
    if not np.all(np.isfinite(dist)):
        raise ArtifactError(f"{p}: camera '{name}' field 'dist' contains NaN or inf")
    R = _matrix(p, name, "R", spec.get("R"), (3, 3))
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise ArtifactError(f"{p}: camera '{name}' field 'R' is not a rotation matrix (orthonormal, det +1)")
    t = _matrix(p, name, "t", spec.get("t"), (3,))
    return Camera(name=name, image_size=(int(size[0]), int(size[1])), K=K, dist=dist, R=R, t=t)
