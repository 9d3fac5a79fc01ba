"""From per-camera 2D keypoints to tracked 3D skeletons: the triangulate stage's library half.

Order of work (each step over all frames at once where the maths allows):

1. threshold 2D scores; 2. associate detections across cameras per frame; 3. triangulate every
associated person: swap correction + consensus outlier rejection (or plain weighted DLT);
4. track identities over time; 5. optional least-squares refinement (bones, smoothness);
6. fill short gaps; 7. optional Butterworth or one-euro filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.geometry.robust import RobustOptions, robust_triangulate
from pipeline.geometry.triangulate import reprojection_errors, triangulate
from pipeline.triangulation.association import AssociationOptions, associate, gather
from pipeline.triangulation.filters import butterworth, fill_gaps, one_euro
from pipeline.triangulation.refine import RefineOptions, refine
from pipeline.triangulation.tracking import TrackingOptions, track


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


def reconstruct(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                bones: Sequence[tuple[int, int]], options: ReconstructOptions,
                show_progress: bool = False) -> Reconstruction:
    """Triangulate and track every person.

    Args:
        rig: C cameras, in the order of ``keypoints``' first axis.
        keypoints: (C, T, P, J, 3) ``[x, y, score]`` in distorted pixels; NaN / 0 where missing.
            Slots are detections, not identities.
        flip_pairs: left/right joint pairs (swap correction).
        bones: skeleton bones (refinement).
        options: see :class:`ReconstructOptions`.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    C, T, P, J, _ = kp.shape
    score = np.nan_to_num(kp[..., 2])
    seen = np.isfinite(kp[..., :2]).all(-1) & (score >= options.score_threshold) & (score > 0)
    w = np.where(seen, score, 0.0)
    uv = np.where(w[..., None] > 0, kp[..., :2], np.nan)

    members = associate(rig, uv, w, options.association, options.robust_options, show_progress)  # (T, K, C)
    K = members.shape[1]
    uv_k = gather(uv, members, np.nan)  # (C, T, K, J, 2)
    w_k = gather(w, members, 0.0)
    ropt = options.robust_options
    if options.robust:
        res = robust_triangulate(rig, uv_k, w_k, ropt, flip_pairs=flip_pairs)
        points, inliers = res.points, res.inliers
        uv_k = res.uv_px
        swaps = int(res.swapped.sum())
    else:
        points = triangulate(rig, uv_k, w_k, min_views=ropt.min_views)
        inliers = (w_k > 0) & np.isfinite(points).all(-1)[None]
        swaps = 0
    # A person needs some triangulated joints to exist in a frame.
    track_of = track(points, options.tracking) if K else np.zeros((T, 0), dtype=np.int64)
    n_tracks = int(track_of.max()) + 1 if track_of.size and track_of.max() >= 0 else 0

    joints = _scatter(points, track_of, n_tracks, np.nan)
    uv_t = _scatter(uv_k, track_of, n_tracks, np.nan, camera_first=True)  # (C, T, P, J, 2)
    w_t = _scatter(np.where(inliers, w_k, 0.0), track_of, n_tracks, 0.0, camera_first=True)

    if options.refine is not None and n_tracks:
        joints = refine(rig, joints, uv_t, w_t, bones, options.refine, show_progress=show_progress)

    used = (w_t > 0) & np.isfinite(joints).all(-1)[None]
    err = reprojection_errors(rig, joints, uv_t)
    views = used.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_err = np.where(used, err, 0.0).sum(0) / np.where(views > 0, views, np.nan)

    joints = fill_gaps(joints, options.gap_max_frames)
    if options.filter == "butterworth":
        joints = butterworth(joints, options.fps, options.butterworth_cutoff_hz, options.butterworth_order)
    elif options.filter == "one_euro":
        joints = one_euro(joints, options.fps, options.one_euro_min_cutoff_hz, options.one_euro_beta)

    n_det = int(((w > 0).sum(-1) >= options.association.min_joints).sum())
    kept = (members >= 0) & (track_of >= 0)[..., None]
    frac = float(kept.sum() / n_det) if n_det else 0.0
    return Reconstruction(
        joints=joints,
        reprojection_error_px=mean_err,
        views_used=views.astype(np.int16),
        swaps_corrected=swaps,
        detections_associated=frac,
    )
