"""Rendered training samples: one sample per (seed, index), and pre-rendered pools of them.

A sample is a pure function of ``(seed, index)`` (its generator is
``numpy.random.default_rng([seed, index])``), so a pool built with any number of processes is
identical, a held-out set is just another seed, and the endless stream
(:class:`~pipeline.training.data.BatchStream` with ``source: stream``) renders the same
samples a pool would hold.

- top-down sample: a person-framed render (``render_size`` [w, h]); ``uv``, ``visible``,
  ``in_frame`` (K, ...) and ``area`` (scalar) of its target person.
- bottom-up sample: a group render; ``uv`` (P_max, K, 2), ``visible`` / ``in_frame`` (P_max, K),
  ``area`` (P_max,) with empty slots NaN / False / 0. ``area`` is the person's visible
  silhouette in pixels (COCO's segment area, for OKS).

Pools are cached as ``.npz`` files named by their parameters, so a second run (or a resumed
one) loads instead of rendering.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import atomic_path
from pipeline.config import param
from pipeline.training.scenes import render_scene

__all__ = ["Pool", "SceneConfig", "build_pool", "load_or_build_pool", "render_sample"]


@dataclass(frozen=True)
class SceneConfig:
    """What the rendered training scenes look like."""

    kind: str = param("topdown", "topdown: person-framed renders; bottomup: group renders")
    render_size: tuple[int, int] = param((120, 160), "rendered image [w, h] in pixels")
    people: tuple[int, int] = param((1, 6), "people per scene, inclusive range")
    max_people: int = param(6, "bottom-up: person slots stored per sample")
    supersample: int = param(1, "ray samples per pixel side (2 = the session renderer's quality)")
    pose_strength: float = param(0.7, "scale of the random limb poses beyond walking (0 = walking only)")
    spread_m: float = param(1.6, "people stand within this distance of the centre (per axis), metres")


@dataclass
class Pool:
    """Samples stacked along axis 0: images (N, h, w, 3) uint8, uv (N, [P,] K, 2), visible / in_frame bool,
    area (N[, P]) float32."""

    images: np.ndarray
    uv: np.ndarray
    visible: np.ndarray
    in_frame: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def render_sample(scene: SceneConfig, seed: int, index: int) -> tuple[np.ndarray, ...]:
    """(image, uv, visible, in_frame, area) of sample ``index`` of stream ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    lo, hi = scene.people
    count = int(rng.integers(lo, hi + 1))
    focus = "person" if scene.kind == "topdown" else "group"
    s = render_scene(rng, scene.render_size, count, focus=focus, supersample=scene.supersample,
                     spread_m=scene.spread_m, pose_strength=scene.pose_strength)
    if scene.kind == "topdown":
        return s.image, s.uv[0], s.visible[0], s.in_frame[0], s.area[0]
    p, k = scene.max_people, s.uv.shape[1]
    uv = np.full((p, k, 2), np.nan, np.float32)
    vis = np.zeros((p, k), bool)
    inf = np.zeros((p, k), bool)
    area = np.zeros(p, np.float32)
    n = min(p, len(s.uv))
    uv[:n], vis[:n], inf[:n], area[:n] = s.uv[:n], s.visible[:n], s.in_frame[:n], s.area[:n]
    return s.image, uv, vis, inf, area


def _render_range(args: tuple[SceneConfig, int, int, int]) -> tuple[np.ndarray, ...]:
    scene, seed, start, stop = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parts = [render_sample(scene, seed, i) for i in range(start, stop)]
    return tuple(np.stack([p[j] for p in parts]) for j in range(5))


def build_pool(scene: SceneConfig, count: int, seed: int, workers: int = 2, progress: bool = False) -> Pool:
    """Render samples 0..count-1 of stream ``seed`` with ``workers`` processes."""
    chunk = 64
    jobs = [(scene, seed, s, min(s + chunk, count)) for s in range(0, count, chunk)]
    if workers <= 1:
        results = [_render_range(j) for j in jobs]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            it = pool.imap(_render_range, jobs)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(jobs), desc=f"render {scene.kind} pool", unit="chunk")
            results = list(it)
    return Pool(*(np.concatenate([r[j] for r in results]) for j in range(5)))


def pool_path(cache_dir: str | Path, scene: SceneConfig, count: int, seed: int) -> Path:
    key = hashlib.sha256(repr((sorted(asdict(scene).items()), count, seed, "v1")).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{scene.kind}_{count}_{seed}_{key}.npz"


def load_or_build_pool(cache_dir: str | Path | None, scene: SceneConfig, count: int, seed: int,
                       workers: int = 2, progress: bool = False) -> Pool:
    """The pool from its cache file, or rendered (and cached when ``cache_dir`` is given)."""
    if cache_dir is not None:
        path = pool_path(cache_dir, scene, count, seed)
        if path.exists():
            with np.load(path) as z:
                if "area" in z:
                    return Pool(z["images"], z["uv"], z["visible"], z["in_frame"], z["area"])
                if scene.kind == "topdown":  # written before areas were stored; top-down never reads them
                    return Pool(z["images"], z["uv"], z["visible"], z["in_frame"],
                                np.full(z["images"].shape[0], np.nan, np.float32))
    pool = build_pool(scene, count, seed, workers, progress)
    if cache_dir is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, images=pool.images, uv=pool.uv, visible=pool.visible, in_frame=pool.in_frame,
                         area=pool.area)
    return pool
