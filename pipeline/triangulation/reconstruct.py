"""From per-camera 2D keypoints to tracked 3D skeletons: the triangulate stage's library half.

Order of work (each step over all frames at once where the maths allows):

1. threshold 2D scores; 2. associate detections across cameras per frame; 3. triangulate every
associated person: swap correction + consensus outlier rejection (or plain weighted DLT);
4. track identities over time; 5. optional least-squares refinement (bones, smoothness);
6. fill short gaps; 7. optional Butterworth or one-euro filter.

Steps 1-3 (:func:`frame_work`) look at one frame at a time and run in fixed blocks of frames;
steps 4-7 (:func:`finish`) run over the whole take, so identities carry across any split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.geometry.robust import RobustOptions, robust_triangulate
from pipeline.geometry.triangulate import reprojection_errors, triangulate
from pipeline.triangulation.association import AssociationOptions, associate, gather
from pipeline.triangulation.filters import butterworth, fill_gaps, one_euro
from pipeline.triangulation.refine import RefineOptions, TrackObservations, refine_tracks
from pipeline.triangulation.tracking import TrackingOptions, track

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


def _scatter(values: np.ndarray, track_of: np.ndarray, n_tracks: int, fill: float,
             camera_first: bool = False) -> np.ndarray:
    """Move per-frame slots (T, K, ...) into track slots (T, P, ...); (C, T, K, ...) if ``camera_first``."""
    v = np.moveaxis(values, 0, 2) if camera_first else values
    T = track_of.shape[0]
    out = np.full((T, n_tracks) + v.shape[2:], fill, dtype=np.result_type(v.dtype, np.asarray(fill).dtype))
    t_idx, k_idx = np.nonzero(track_of >= 0)
    out[t_idx, track_of[t_idx, k_idx]] = v[t_idx, k_idx]
    return np.moveaxis(out, 2, 0) if camera_first else out


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


def _pad_slots(a: np.ndarray, axis: int, size: int, fill: float | bool | int) -> np.ndarray:
    extra = size - a.shape[axis]
    if extra == 0:
        return a
    shape = list(a.shape)
    shape[axis] = extra
    return np.concatenate([a, np.full(shape, fill, dtype=a.dtype)], axis=axis)


def concat_frame_work(parts: Sequence[FrameWork]) -> FrameWork:
    """Consecutive frame ranges -> one range; person slots padded with empty ones to the largest count."""
    K = max(p.members.shape[1] for p in parts)
    return FrameWork(
        members=np.concatenate([_pad_slots(p.members, 1, K, -1) for p in parts]),
        points=np.concatenate([_pad_slots(p.points, 1, K, np.nan) for p in parts]),
        inliers=np.concatenate([_pad_slots(p.inliers, 2, K, False) for p in parts], axis=1),
        uv=np.concatenate([_pad_slots(p.uv, 2, K, np.nan) for p in parts], axis=1),
        weights=np.concatenate([_pad_slots(p.weights, 2, K, 0.0) for p in parts], axis=1),
        swaps_corrected=sum(p.swaps_corrected for p in parts),
        detections=sum(p.detections for p in parts),
    )


def _slot_statistics(rig: Rig, joints: np.ndarray, track_of: np.ndarray, uv: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Views used and mean reprojection error (px) of every slot's joint, (T, K, J) each.

    ``joints`` (T, P, J, 3) per track; ``track_of`` (T, K) the track of each slot (-1 = none); ``uv``
    (C, T, K, J, 2) and ``weights`` (C, T, K, J) the slot observations (weight 0 = not used).
    Computed in blocks of :data:`FRAME_BLOCK` frames, so the temporaries do not grow with the take.
    """
    T, K = track_of.shape
    J = uv.shape[3]
    views_slot = np.zeros((T, K, J), np.int64)
    err_slot = np.full((T, K, J), np.nan)
    for t0 in range(0, T, FRAME_BLOCK):
        sl = slice(t0, t0 + FRAME_BLOCK)
        tr = track_of[sl]
        t_idx, k_idx = np.nonzero(tr >= 0)
        slot_joints = np.full((*tr.shape, J, 3), np.nan)
        slot_joints[t_idx, k_idx] = joints[sl][t_idx, tr[t_idx, k_idx]]
        used = (weights[:, sl] > 0) & np.isfinite(slot_joints).all(-1)[None]  # (C, t, K, J)
        err = reprojection_errors(rig, slot_joints, uv[:, sl])
        views = used.sum(0)
        views_slot[sl] = views
        with np.errstate(invalid="ignore", divide="ignore"):
            err_slot[sl] = np.where(used, err, 0.0).sum(0) / np.where(views > 0, views, np.nan)
    return views_slot, err_slot


RefineFn = Callable[[Rig, np.ndarray, TrackObservations, Sequence[tuple[int, int]], RefineOptions], np.ndarray]


def finish(rig: Rig, work: FrameWork, bones: Sequence[tuple[int, int]], options: ReconstructOptions,
           show_progress: bool = False, refine_fn: RefineFn | None = None) -> Reconstruction:
    """The whole-take half of :func:`reconstruct`: tracking, refinement, gap filling, filtering.

    Args:
        work: every frame's :class:`FrameWork`, in order.
        refine_fn: replaces :func:`~pipeline.triangulation.refine.refine_tracks` (same arguments and
            result), e.g. to solve its chunks in parallel; None = ``refine_tracks``.
    """
    points, members = work.points, work.members
    T, K = members.shape[:2]
    # A person needs some triangulated joints to exist in a frame.
    track_of = track(points, options.tracking) if K else np.zeros((T, 0), dtype=np.int64)
    n_tracks = int(track_of.max()) + 1 if track_of.size and track_of.max() >= 0 else 0

    joints = _scatter(points, track_of, n_tracks, np.nan)
    # observations stay in per-frame slots: a dense (C, T, P, J, 2) copy grows with frames x tracks
    obs = TrackObservations(work.uv, np.where(work.inliers, work.weights, 0.0), track_of, n_tracks)

    if options.refine is not None and n_tracks:
        if refine_fn is None:
            joints = refine_tracks(rig, joints, obs, bones, options.refine, show_progress=show_progress)
        else:
            joints = refine_fn(rig, joints, obs, bones, options.refine)

    views_slot, err_slot = _slot_statistics(rig, joints, track_of, work.uv, obs.weights)
    views = _scatter(views_slot, track_of, n_tracks, 0)
    mean_err = _scatter(err_slot, track_of, n_tracks, np.nan)

    joints = fill_gaps(joints, options.gap_max_frames)
    if options.filter == "butterworth":
        joints = butterworth(joints, options.fps, options.butterworth_cutoff_hz, options.butterworth_order)
    elif options.filter == "one_euro":
        joints = one_euro(joints, options.fps, options.one_euro_min_cutoff_hz, options.one_euro_beta)

    kept = (members >= 0) & (track_of >= 0)[..., None]
    frac = float(kept.sum() / work.detections) if work.detections else 0.0
    return Reconstruction(
        joints=joints,
        reprojection_error_px=mean_err,
        views_used=views.astype(np.int16),
        swaps_corrected=work.swaps_corrected,
        detections_associated=frac,
    )


def reconstruct(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                bones: Sequence[tuple[int, int]], options: ReconstructOptions,
                show_progress: bool = False) -> Reconstruction:
    """Triangulate and track every person.

    The per-frame work runs in blocks of :data:`FRAME_BLOCK` frames, so the result is the same
    whether the blocks are computed here one after the other or spread over workers
    (:mod:`pipeline.triangulation.chunks`).

    Args:
        rig: C cameras, in the order of ``keypoints``' first axis.
        keypoints: (C, T, P, J, 3) ``[x, y, score]`` in distorted pixels; NaN / 0 where missing.
            Slots are detections, not identities.
        flip_pairs: left/right joint pairs (swap correction).
        bones: skeleton bones (refinement).
        options: see :class:`ReconstructOptions`.
    """
    kp = np.asarray(keypoints)  # frame_work converts each block to float64: no whole-take float64 copy
    T = kp.shape[1]
    parts = [frame_work(rig, kp[:, t0:t0 + FRAME_BLOCK], flip_pairs, options, show_progress)
             for t0 in range(0, max(T, 1), FRAME_BLOCK)]
    work = concat_frame_work(parts)
    del parts  # one copy of the per-frame arrays through the whole-take half
    return finish(rig, work, bones, options, show_progress)
