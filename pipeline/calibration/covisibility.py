"""Synchronised board observations of a rig and the co-visibility graph over its cameras.

:class:`Observations` holds every camera's board corners on a common frame axis. The
co-visibility graph has one node per camera and an edge between two cameras weighted by the
number of frames in which both hold a usable view of the board; its maximum spanning tree (the
strongest links that reach every camera) is the chain along which camera poses are initialised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PosecapError


@dataclass(frozen=True)
class Observations:
    """Board corners seen by C cameras over F synchronised frames.

    Attributes:
        cameras: the C camera names (the camera axis order).
        frames: int64 (F,) frame index of each sample on the recording's common clock.
        corners: float64 (C, F, N, 2) distorted pixels, NaN where the corner was not seen.
        image_sizes: per camera ``(width, height)`` px.
        source_frames: int64 (C, F) each camera's own frame index of a sample (-1 where it has
            none); None means the same as ``frames``.
    """

    cameras: tuple[str, ...]
    frames: np.ndarray
    corners: np.ndarray
    image_sizes: tuple[tuple[int, int], ...]
    source_frames: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "frames", np.asarray(self.frames, np.int64))
        object.__setattr__(self, "corners", np.asarray(self.corners, np.float64))
        C, F = len(self.cameras), self.frames.shape[0]
        if self.corners.ndim != 4 or self.corners.shape[:2] != (C, F) or self.corners.shape[3] != 2:
            raise ValueError(f"corners must have shape ({C}, {F}, N, 2); got {self.corners.shape}")
        if len(self.image_sizes) != C:
            raise ValueError(f"image_sizes must hold {C} sizes; got {len(self.image_sizes)}")
        if self.source_frames is None:
            object.__setattr__(self, "source_frames", np.tile(self.frames, (C, 1)))
        object.__setattr__(self, "source_frames", np.asarray(self.source_frames, np.int64))
        if self.source_frames.shape != (C, F):
            raise ValueError(f"source_frames must have shape ({C}, {F}); got {self.source_frames.shape}")

    @property
    def n_corners(self) -> int:
        return int(self.corners.shape[2])

    def seen(self) -> np.ndarray:
        """bool (C, F, N): the corner was observed."""
        return np.isfinite(self.corners).all(axis=-1)

    def index(self, camera: str) -> int:
        try:
            return self.cameras.index(camera)
        except ValueError:
            raise KeyError(f"camera {camera!r} not observed (cameras: {', '.join(self.cameras)})") from None

    def subset_frames(self, keep: np.ndarray) -> Observations:
        """Only the frames where ``keep`` (F,) bool is true (or at the given indices)."""
        return Observations(self.cameras, self.frames[keep], self.corners[:, keep], self.image_sizes,
                            self.source_frames[:, keep])


def synchronise(per_camera: Mapping[str, tuple[np.ndarray, np.ndarray]], timing: Mapping[str, tuple[float, float]],
                image_sizes: Mapping[str, tuple[int, int]], n_corners: int) -> Observations:
    """Put each camera's detections on one frame axis.

    Args:
        per_camera: camera -> (frame_index int (F_c,), corners (F_c, N, 2)).
        timing: camera -> (fps, time_offset_s) from session.yaml; a frame ``i`` of a camera is
            at time ``time_offset_s + i / fps``.
        image_sizes: camera -> (width, height).
        n_corners: N.

    Returns:
        Observations whose frame axis is the highest frame rate's; a detection that falls more
        than a quarter frame from a tick of that clock is left out (not synchronised).
    """
    cams = list(per_camera)
    ref_fps = max(timing[c][0] for c in cams)
    keyed: dict[str, dict[int, np.ndarray]] = {}
    for cam in cams:
        idx, corners = per_camera[cam]
        fps, offset = timing[cam]
        ticks = (offset + np.asarray(idx, np.float64) / fps) * ref_fps
        keys = np.round(ticks).astype(np.int64)
        ok = np.abs(ticks - keys) <= 0.25
        keyed[cam] = {int(k): (int(idx[i]), corners[i]) for i, k in enumerate(keys) if ok[i]}
    frames = np.asarray(sorted({k for d in keyed.values() for k in d}), np.int64)
    pos = {int(f): i for i, f in enumerate(frames)}
    out = np.full((len(cams), frames.shape[0], n_corners, 2), np.nan)
    source = np.full((len(cams), frames.shape[0]), -1, np.int64)
    for c, cam in enumerate(cams):
        for k, (own, corners) in keyed[cam].items():
            out[c, pos[k]] = corners
            source[c, pos[k]] = own
    return Observations(tuple(cams), frames, out, tuple(tuple(image_sizes[c]) for c in cams), source)


@dataclass(frozen=True)
class CovisibilityGraph:
    """Co-visibility of C cameras.

    Attributes:
        cameras: the camera names.
        weights: int (C, C) symmetric, frames in which both cameras hold a usable view (diagonal:
            a camera's own usable views).
        tree: the maximum spanning tree's edges ``(a, b)`` (camera indices), in the order Kruskal
            accepted them.
    """

    cameras: tuple[str, ...]
    weights: np.ndarray
    tree: tuple[tuple[int, int], ...]

    def edges(self) -> list[tuple[int, int, int]]:
        """Every edge with a positive weight: ``(a, b, frames)`` with a < b."""
        C = len(self.cameras)
        return [(a, b, int(self.weights[a, b])) for a in range(C) for b in range(a + 1, C) if self.weights[a, b] > 0]

    def as_yaml(self) -> dict:
        in_tree = {tuple(sorted(e)) for e in self.tree}
        return {
            "views_per_camera": {c: int(self.weights[i, i]) for i, c in enumerate(self.cameras)},
            "edges": [{"cameras": [self.cameras[a], self.cameras[b]], "frames": w,
                       "spanning_tree": (a, b) in in_tree} for a, b, w in self.edges()],
            "spanning_tree": [[self.cameras[a], self.cameras[b]] for a, b in self.tree],
        }


def covisibility(valid: np.ndarray, cameras: Sequence[str]) -> CovisibilityGraph:
    """Build the graph and its maximum spanning tree from usable views.

    Args:
        valid: bool (C, F), the camera holds a usable view of the board in the frame.
        cameras: the C names.

    Raises:
        PosecapError: naming a camera that never sees the board together with another camera,
            or a group of cameras not linked to the others.
    """
    valid = np.asarray(valid, bool)
    C = valid.shape[0]
    w = valid.astype(np.int64) @ valid.T.astype(np.int64)
    edges = sorted(((int(w[a, b]), a, b) for a in range(C) for b in range(a + 1, C) if w[a, b] > 0),
                   key=lambda e: (-e[0], e[1], e[2]))
    parent = list(range(C))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = []
    for _, a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            tree.append((a, b))
    graph = CovisibilityGraph(tuple(cameras), w, tuple(tree))
    if C < 2:
        raise PosecapError(f"a rig needs at least two cameras with board views; got {', '.join(cameras) or 'none'}")
    lonely = [cameras[c] for c in range(C) if w[c].sum() - w[c, c] == 0]
    if lonely:
        c = cameras.index(lonely[0])
        raise PosecapError(
            f"camera {lonely[0]} never sees the board at the same time as another camera ({int(w[c, c])} usable "
            f"views of its own); record board poses that {lonely[0]} and a neighbouring camera see together"
            + (f" (also alone: {', '.join(lonely[1:])})" if lonely[1:] else "")
        )
    groups: dict[int, list[str]] = {}
    for c in range(C):
        groups.setdefault(find(c), []).append(cameras[c])
    if len(groups) > 1:
        parts = sorted(groups.values(), key=lambda g: (-len(g), g))
        raise PosecapError(
            f"cameras {', '.join(parts[1])} never see the board together with cameras {', '.join(parts[0])}; "
            "record board poses that link the two groups"
        )
    return graph


def tree_order(graph: CovisibilityGraph, root: int) -> list[tuple[int, int]]:
    """The spanning tree's edges as ``(parent, child)`` in breadth-first order from ``root``."""
    adj: dict[int, list[int]] = {}
    for a, b in graph.tree:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    order, seen, queue = [], {root}, [root]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(adj.get(node, []), key=lambda n: -graph.weights[node, n]):
            if nxt not in seen:
                seen.add(nxt)
                order.append((node, nxt))
                queue.append(nxt)
    return order
