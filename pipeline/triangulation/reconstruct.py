"""From per-camera 2D keypoints to tracked 3D skeletons: the triangulate stage's library half.

Order of work (each step over all frames at once where the maths allows):

1. threshold 2D scores; 2. associate detections across cameras per frame; 3. triangulate every
associated person: swap correction + consensus outlier rejection (or plain weighted DLT);
4. track identities over time; 5. optional least-squares refinement (bones, smoothness);
6. fill short gaps; 7. optional Butterworth or one-euro filter.

Steps 1-3 (:func:`frame_work`) look at one frame at a time and run in fixed blocks of frames;
steps 4-7 carry over from block to block (:mod:`pipeline.triangulation.take`), so identities
carry across any split and memory can stay bounded on long takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.geometry.robust import RobustOptions, robust_triangulate
from pipeline.geometry.triangulate import triangulate
from pipeline.triangulation.association import AssociationOptions, associate, gather
from pipeline.triangulation.blocks import BlockStore
from pipeline.triangulation.refine import RefineOptions
from pipeline.triangulation.tracking import TrackingOptions

# ``map(fn, items) -> [fn(item) for item in items]``, possibly in parallel (``StageContext.map``)
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

# Frames associated and triangulated together. Results depend on this grid (consensus sampling
# draws per block), never on how the blocks are spread over workers; chunks are whole blocks.
FRAME_BLOCK = 400


@dataclass(frozen=True)
class ReconstructOptions:
    """Everything :func:`reconstruct` needs besides the data.

    Attributes:
        score_threshold: 2D keypoints with a lower score are treated as missing.
        robust: reject outlier views by consensus (and correct left/right swaps); else plain DLT.
        robust_options: thresholds of the consensus path (its ``min_views`` applies to DLT too).
        association: cross-view association settings.
        tracking: identity tracking settings.
        refine: refinement settings, or None to skip refinement.
        gap_max_frames: fill runs of at most this many missing frames (0 = off).
        filter: temporal filter applied last.
        fps: frame rate, for the filters.
        butterworth_cutoff_hz, butterworth_order: Butterworth settings.
        one_euro_min_cutoff_hz, one_euro_beta: one-euro settings.
    """

    score_threshold: float = 0.3
    robust: bool = True
    robust_options: RobustOptions = field(default_factory=RobustOptions)
    association: AssociationOptions = field(default_factory=AssociationOptions)
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    refine: RefineOptions | None = None
    gap_max_frames: int = 10
    filter: Literal["none", "butterworth", "one_euro"] = "none"
    fps: float = 30.0
    butterworth_cutoff_hz: float = 6.0
    butterworth_order: int = 4
    one_euro_min_cutoff_hz: float = 1.0
    one_euro_beta: float = 0.5


@dataclass(frozen=True)
class Reconstruction:
    """Tracked 3D people.

    Attributes:
        joints: (T, P, J, 3) metres, world frame; NaN where unknown. Slot p is one person.
        reprojection_error_px: (T, P, J) mean error over the views used; NaN where not triangulated.
        views_used: (T, P, J) int, inlier views (0 where not triangulated, e.g. gap-filled).
        swaps_corrected: number of (camera, frame, person, flip pair) swaps corrected.
        detections_associated: fraction of 2D detections that ended in a tracked person.
    """

    joints: np.ndarray
    reprojection_error_px: np.ndarray
    views_used: np.ndarray
    swaps_corrected: int
    detections_associated: float


@dataclass(frozen=True)
class FrameWork:
    """The per-frame half of :func:`reconstruct` for a range of frames (association + triangulation).

    Each frame's result depends on that frame's keypoints only, so ranges can be computed apart
    (in parallel) and concatenated with :func:`concat_frame_work`.

    Attributes:
        members: (T, K, C) int, detection slot per camera of each associated person, -1 = none.
        points: (T, K, J, 3) metres, triangulated people per frame (NaN where unknown).
        inliers: (C, T, K, J) bool, views used for each point.
        uv: (C, T, K, J, 2) pixels, the (swap-corrected) observations of each person, in the input dtype.
        weights: (C, T, K, J) scores of those observations (swapped with them), 0 where missing; input dtype.
        swaps_corrected: (camera, frame, person, flip pair) swaps corrected in the range.
        detections: 2D detections with at least ``association.min_joints`` keypoints.
    """

    members: np.ndarray
    points: np.ndarray
    inliers: np.ndarray
    uv: np.ndarray
    weights: np.ndarray
    swaps_corrected: int
    detections: int


def frame_work(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
               options: ReconstructOptions, show_progress: bool = False) -> FrameWork:
    """Threshold, associate across cameras and triangulate every frame of ``keypoints`` (C, T, P, J, 3)."""
    # uv and weights are kept in the input's precision (float32 from pose2d files): they are input
    # values moved between slots, so this loses nothing and halves the take-long arrays
    store = np.result_type(np.float32, np.asarray(keypoints).dtype)
    kp = np.asarray(keypoints, dtype=np.float64)
    score = np.nan_to_num(kp[..., 2])
    seen = np.isfinite(kp[..., :2]).all(-1) & (score >= options.score_threshold) & (score > 0)
    w = np.where(seen, score, 0.0)
    uv = np.where(w[..., None] > 0, kp[..., :2], np.nan)

    members = associate(rig, uv, w, options.association, options.robust_options, show_progress)  # (T, K, C)
    uv_k = gather(uv, members, np.nan)  # (C, T, K, J, 2)
    w_k = gather(w, members, 0.0)
    ropt = options.robust_options
    if options.robust:
        res = robust_triangulate(rig, uv_k, w_k, ropt, flip_pairs=flip_pairs)
        points, inliers = res.points, res.inliers
        uv_k, w_k = res.uv_px, res.weights  # a swapped pair's weights move with its observations
        swaps = int(res.swapped.sum())
    else:
        points = triangulate(rig, uv_k, w_k, min_views=ropt.min_views)
        inliers = (w_k > 0) & np.isfinite(points).all(-1)[None]
        swaps = 0
    n_det = int(((w > 0).sum(-1) >= options.association.min_joints).sum())
    return FrameWork(members, points, inliers, uv_k.astype(store, copy=False), w_k.astype(store, copy=False),
                     swaps, n_det)


def reconstruct(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                bones: Sequence[tuple[int, int]], options: ReconstructOptions, task_frames: int = 0,
                mapper: Mapper | None = None) -> Reconstruction:
    """Triangulate and track every person.

    The take is worked on in blocks of :data:`FRAME_BLOCK` frames
    (:func:`~pipeline.triangulation.take.reconstruct_take`, here with the blocks in memory), so
    the result is the same whether the blocks are computed here or spread over workers.

    Args:
        rig: C cameras, in the order of ``keypoints``' first axis.
        keypoints: (C, T, P, J, 3) ``[x, y, score]`` in distorted pixels; NaN / 0 where missing.
            Slots are detections, not identities.
        flip_pairs: left/right joint pairs (swap correction).
        bones: skeleton bones (refinement).
        options: see :class:`ReconstructOptions`.
        task_frames: frames per parallel task (rounded down to whole blocks; 0 = one task).
        mapper: runs a module-level function over items, in order, possibly in parallel
            (``StageContext.map``); None = here, one after the other.
    """
    from pipeline.triangulation.take import reconstruct_take  # take.py builds on this module

    with BlockStore() as store:
        return reconstruct_take(rig, np.asarray(keypoints), flip_pairs, bones, options, store, task_frames,
                                mapper).to_reconstruction()
