"""Stage ``triangulate``: per-camera 2D keypoints + calibrated rig -> tracked 3D skeletons.

Reads ``calib/rig.yaml`` and ``pose2d/<cam>.npz``; writes ``pose3d/skeletons.npz`` and
``pose3d/pose3d.yaml``. Detections are associated across cameras, left/right swaps corrected,
outlier views rejected by consensus, people tracked over time, then optionally refined and
filtered. See the README (section "Triangulation"). The take is read, worked on and written in
blocks of frames (``pipeline.triangulation.take``), its intermediate blocks kept in
``pose3d/.blocks/`` while the stage runs, so memory stays flat however long the take is. The
per-frame work and the refinement run as parallel tasks (``task_frames``) on the engine's
executor; tracking carries over from block to block, so the result is the same for any split.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

from pipeline.config import param
from pipeline.errors import ConfigError
from pipeline.geometry.rig import Rig
from pipeline.geometry.robust import RobustOptions
from pipeline.skeleton import get_skeleton
from pipeline.stage import Stage, StageContext, static_paths
from pipeline.triangulation.association import AssociationOptions
from pipeline.triangulation.blocks import BlockStore
from pipeline.triangulation.io import write_pose3d_blocks
from pipeline.triangulation.reconstruct import ReconstructOptions
from pipeline.triangulation.refine import RefineOptions
from pipeline.triangulation.source import open_pose2d
from pipeline.triangulation.take import reconstruct_take
from pipeline.triangulation.tracking import TrackingOptions

log = logging.getLogger("posecap")

RIG = "calib/rig.yaml"
POSE2D = "pose2d"
SKELETONS = "pose3d/skeletons.npz"
POSE3D_YAML = "pose3d/pose3d.yaml"
SYNC = "sync.yaml"
SCRATCH = ".blocks"  # pose3d/.blocks: the take's intermediate blocks while the stage runs (removed after)


@dataclass(frozen=True)
class TriangulateParams:
    """Triangulation: association, robust triangulation, tracking, refinement, filtering."""

    skeleton: str = param("coco17", "joint order of the pose2d keypoints (coco17, body25)")
    score_threshold: float = param(0.3, "2D keypoints scoring below this are treated as missing")
    min_views: int = param(2, "a 3D joint needs at least this many (inlier) views")
    robust: bool = param(True, "reject outlier views by consensus, fix left/right swaps; false = plain DLT")
    reprojection_threshold_px: float = param(15.0, "views farther than this from the consensus are outliers")
    max_hypotheses: int = param(24, "view pairs tried per joint (all pairs when there are no more)")
    swap_correction: bool = param(True, "detect and fix left/right swapped limbs in single views")
    association_threshold_px: float = param(25.0, "max median epipolar distance of one person in two views")
    association_reprojection_px: float = param(40.0, "max median reprojection distance when re-assigning, px")
    association_min_view_share: float = param(
        0.6, "a person must be detected by at least this share of the cameras it projects into (0 = off); "
        "fewer is a ghost of two people who agree along an epipolar line")
    min_joints: int = param(5, "2D detections with fewer keypoints are ignored")
    track_max_distance_m: float = param(0.4, "max median joint distance to a track's predicted pose, m")
    track_max_gap_frames: int = param(15, "a track unseen for more frames ends")
    min_track_frames: int = param(5, "tracks shorter than this are dropped as spurious")
    refine: bool = param(True, "least-squares refinement with bone-length and smoothness terms")
    bone_weight: float = param(1.0, "refinement: 1 = 1 cm bone-length deviation costs like 1 px")
    smooth_weight: float = param(1.0, "refinement: 1 = 1 cm/frame^2 acceleration costs like 1 px")
    refine_loss_scale_px: float = param(5.0, "refinement: robust (soft-L1) loss scale, px")
    refine_max_iterations: int = param(30, "refinement: function evaluations per chunk of frames")
    gap_max_frames: int = param(10, "fill gaps of at most this many frames by interpolation (0 = off)")
    filter: Literal["none", "butterworth", "one_euro"] = param("butterworth", "temporal filter applied last")
    fps: float = param(30.0, "frame rate of the keypoints, for the filter cutoffs")
    butterworth_cutoff_hz: float = param(6.0, "zero-phase Butterworth low-pass cutoff, Hz")
    butterworth_order: int = param(4, "Butterworth filter order")
    one_euro_min_cutoff_hz: float = param(4.0, "one-euro minimum cutoff, Hz (causal; lags more when lower)")
    one_euro_beta: float = param(50.0, "one-euro speed coefficient, 1/(m/s)")
    seed: int = param(0, "random seed for sampled view pairs (results are reproducible)")
    task_frames: int = param(4000, "frames per parallel task of a long take (rounded down to whole blocks of "
                                   "400; 0 = one task); results do not depend on it")

    def __post_init__(self) -> None:
        if self.min_views < 2:
            raise ValueError(f"'min_views' must be >= 2, got {self.min_views}")
        for key in ("reprojection_threshold_px", "association_threshold_px", "association_reprojection_px",
                    "track_max_distance_m", "fps", "butterworth_cutoff_hz"):
            if getattr(self, key) <= 0:
                raise ValueError(f"'{key}' must be > 0, got {getattr(self, key)}")
        if self.filter == "butterworth" and self.butterworth_cutoff_hz >= self.fps / 2:
            raise ValueError(f"'butterworth_cutoff_hz' must be below fps / 2 = {self.fps / 2}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"'score_threshold' must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.association_min_view_share <= 1.0:
            raise ValueError(f"'association_min_view_share' must be in [0, 1], got {self.association_min_view_share}")
        if self.task_frames < 0:
            raise ValueError(f"'task_frames' must be >= 0, got {self.task_frames}")


def options_from_params(p: TriangulateParams) -> ReconstructOptions:
    """Map the flat config section onto the library's option objects."""
    return ReconstructOptions(
        score_threshold=p.score_threshold,
        robust=p.robust,
        robust_options=RobustOptions(threshold_px=p.reprojection_threshold_px, min_views=p.min_views,
                                     max_hypotheses=p.max_hypotheses, swap_correction=p.swap_correction,
                                     seed=p.seed),
        association=AssociationOptions(epipolar_threshold_px=p.association_threshold_px,
                                       reprojection_threshold_px=p.association_reprojection_px,
                                       min_joints=p.min_joints, min_view_share=p.association_min_view_share),
        tracking=TrackingOptions(max_distance_m=p.track_max_distance_m, max_gap_frames=p.track_max_gap_frames,
                                 min_track_frames=p.min_track_frames),
        refine=RefineOptions(bone_weight=p.bone_weight, smooth_weight=p.smooth_weight,
                             loss_scale_px=p.refine_loss_scale_px, max_iterations=p.refine_max_iterations)
        if p.refine else None,
        gap_max_frames=p.gap_max_frames,
        filter=p.filter,
        fps=p.fps,
        butterworth_cutoff_hz=p.butterworth_cutoff_hz,
        butterworth_order=p.butterworth_order,
        one_euro_min_cutoff_hz=p.one_euro_min_cutoff_hz,
        one_euro_beta=p.one_euro_beta,
    )


def run(ctx: StageContext) -> None:
    params: TriangulateParams = ctx.params
    try:
        skeleton = get_skeleton(params.skeleton)
    except ConfigError as exc:
        raise ConfigError(f"triangulate.skeleton: {exc}") from None
    rig_path = ctx.require(RIG)
    rig = Rig.load(rig_path)
    sync = None
    if ctx.path(SYNC).is_file():
        from pipeline.sync.io import read_sync

        sync = read_sync(ctx.path(SYNC))
        if abs(sync.reference_fps - params.fps) > 1e-6 * sync.reference_fps:
            ctx.log.warning("triangulate: fps is %g but the reference clock in %s runs at %g fps; the filter "
                            "cutoffs assume %g (set triangulate.fps)", params.fps, SYNC, sync.reference_fps,
                            params.fps)
    pose3d = ctx.path("pose3d")
    with open_pose2d(ctx.require(POSE2D), rig, rig_path, skeleton.num_joints, log=ctx.log, sync=sync) as source, \
            BlockStore(pose3d / SCRATCH) as store:
        timestamp_s = source.timestamp_s if source.timestamp_s is not None else source.frame_index / params.fps
        ctx.log.info("triangulate: %d cameras, %d frames, up to %d detections per camera",
                     len(source.rig), source.frames, source.people)
        result = reconstruct_take(source.rig, source, skeleton.flip_pairs, skeleton.bones,
                                  options_from_params(params), store, params.task_frames, ctx.map,
                                  show_progress=ctx.show_progress)
        if result.n_tracks == 0:
            ctx.log.warning("triangulate: no person was seen by two cameras; pose3d holds no people")
        write_pose3d_blocks(
            pose3d, result.joints_blocks(), result.error_blocks(), result.views_blocks(), source.frame_index,
            n_people=result.n_tracks, n_joints=skeleton.num_joints, skeleton=skeleton.name,
            joint_names=list(skeleton.joint_names), cameras=source.rig.names, settings=dataclasses.asdict(params),
            stats={"swaps_corrected": result.swaps_corrected,
                   "detections_associated": round(result.detections_associated, 4),
                   "synchronized": sync is not None},
            timestamp_s=timestamp_s,
        )
    ctx.log.info("triangulate: %d people, %d swaps corrected", result.n_tracks, result.swaps_corrected)


STAGE = Stage(
    name="triangulate",
    version="5",
    params_type=TriangulateParams,
    inputs=static_paths(RIG, POSE2D),
    optional_inputs=static_paths(SYNC),  # used when present or made by the sync stage
    outputs=static_paths(SKELETONS, POSE3D_YAML),
    run=run,
    summary="associate, triangulate and track 2D keypoints into 3D skeletons (pose3d/)",
)
