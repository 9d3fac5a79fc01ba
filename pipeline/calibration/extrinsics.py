"""Calibrate a whole rig from synchronised board observations: init, bundle adjustment, outliers, world frame.

:func:`calibrate_rig` runs, in order:

1. per-view board poses and degenerate-view checks (:mod:`pipeline.calibration.rig_init`);
2. the co-visibility graph and its maximum spanning tree (an error names a camera that never sees
   the board together with another one);
3. camera poses chained from the reference camera, board poses averaged over their views;
4. global bundle adjustment (:mod:`pipeline.calibration.bundle_adjust`) with a robust loss,
   then rounds of outlier removal: an observation whose error exceeds
   ``max(median + outlier_k * 1.4826 * MAD, outlier_floor_px)`` is removed (a view left with
   fewer than ``min_corners`` corners goes entirely) and the adjustment runs again;
5. the world frame: the reference camera's, or a board lying on the floor in a chosen frame
   (its corner 0 the origin, x along its first row, z up out of its printed face, z = 0 its plane).

Lengths are metres: the board's object points carry the square size, which fixes the scale.
The result is deterministic: frame subsampling, when asked for, uses a seeded generator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.calibration.bundle_adjust import (
    INTRINSIC_PARAMS,
    N_INTR,
    BAData,
    BAOptions,
    BAResult,
    BAState,
    bundle_adjust,
    residuals,
    rodrigues,
    rotation_to_rvec,
)
from pipeline.calibration.covisibility import CovisibilityGraph, Observations, covisibility
from pipeline.calibration.rig_init import ViewCheck, board_view_poses, board_world_poses, chain_cameras
from pipeline.errors import PosecapError
from pipeline.geometry.camera import Camera, pad_dist
from pipeline.geometry.rig import Rig

FLOOR_FLIP = np.diag([1.0, -1.0, -1.0])
"""Board frame -> floor world frame: x kept, y and z reversed (board z points into the board, down)."""


@dataclass(frozen=True)
class Intrinsics:
    """One camera's lens (from ``calib/intrinsics/<cam>.yaml``): K (3, 3), OpenCV dist (4, 5 or 8)."""

    name: str
    image_size: tuple[int, int]
    K: np.ndarray
    dist: np.ndarray


@dataclass(frozen=True)
class RigOptions:
    """Settings of :func:`calibrate_rig` (the stage's params, typed).

    Attributes:
        reference: camera whose pose is held and which is the world with ``world='first_camera'``
            (None = the first camera).
        world: ``first_camera`` or ``floor_board``.
        floor_frame: with ``floor_board``, the frame (on the recording's clock) showing the board
            lying on the floor.
        check: what makes a view usable.
        free_intrinsics: camera name (or ``*`` for all) -> intrinsic names to refine.
        loss, loss_scale_px, max_nfev, jacobian: the bundle adjustment's (see BAOptions).
        outlier_k, outlier_floor_px, outlier_rounds: outlier removal.
        max_frames: most frames used (0 = all); a seeded sample keeps the count down.
        seed: seed of that sample.
    """

    reference: str | None = None
    world: str = "first_camera"
    floor_frame: int | None = None
    check: ViewCheck = field(default_factory=ViewCheck)
    free_intrinsics: Mapping[str, Sequence[str]] = field(default_factory=dict)
    loss: str = "huber"
    loss_scale_px: float = 1.0
    max_nfev: int = 200
    jacobian: str = "analytic"
    outlier_k: float = 4.0
    outlier_floor_px: float = 1.0
    outlier_rounds: int = 3
    max_frames: int = 0
    seed: int = 0


@dataclass(frozen=True)
class RigCalibration:
    """The calibrated rig and everything the report needs.

    Attributes:
        rig: the cameras in the chosen world frame.
        rms_px: camera -> RMS reprojection error over its inlier observations.
        graph: the co-visibility graph of usable views.
        frames: int64 (F,) the observations' frame axis.
        usable: bool (C, F) the views that passed the checks of :func:`board_view_poses`.
        dropped: dicts ``{camera, frame, reason, detail}`` for every view left out.
        obs_cam, obs_frame, obs_corner: int (M,) camera index, frame position, corner id of
            every observation that entered the adjustment.
        residuals_px: float64 (M, 2) predicted minus observed at the final parameters.
        inlier: bool (M,) the observation survived outlier removal.
        board_frames: int (B,) frame positions of the adjusted board poses.
        board_R, board_t: (B, 3, 3), (B, 3) board -> world, in the final world frame.
        initial_rms_px: RMS over the same observations at the initial (chained) parameters.
        ba: the last bundle adjustment.
        rounds: bundle adjustments run.
        freed: camera -> intrinsic names refined.
        warnings: messages for the log and the report.
    """

    rig: Rig
    rms_px: dict[str, float]
    graph: CovisibilityGraph
    frames: np.ndarray
    usable: np.ndarray
    dropped: list[dict]
    obs_cam: np.ndarray
    obs_frame: np.ndarray
    obs_corner: np.ndarray
    residuals_px: np.ndarray
    inlier: np.ndarray
    board_frames: np.ndarray
    board_R: np.ndarray
    board_t: np.ndarray
    initial_rms_px: float
    ba: BAResult
    rounds: int
    freed: dict[str, list[str]]
    warnings: list[str]


def free_mask(cameras: Sequence[str], spec: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(C, 12) bool from ``{camera or '*': [names]}``; a camera's own entry replaces ``*``."""
    mask = np.zeros((len(cameras), N_INTR), bool)
    for key in spec:
        if key != "*" and key not in cameras:
            raise PosecapError(f"refine_intrinsics names camera {key!r}, not in the rig ({', '.join(cameras)})")
        bad = [n for n in spec[key] if n not in INTRINSIC_PARAMS]
        if bad:
            raise PosecapError(f"refine_intrinsics.{key}: unknown parameter(s) {', '.join(bad)}; "
                               f"choose from {', '.join(INTRINSIC_PARAMS)}")
    for c, cam in enumerate(cameras):
        names = spec.get(cam, spec.get("*", ()))
        for n in names:
            mask[c, INTRINSIC_PARAMS.index(n)] = True
    return mask


def _sample_frames(valid: np.ndarray, max_frames: int, seed: int) -> np.ndarray:
    """bool (F,): frames kept; all when ``max_frames`` is 0 or not exceeded (seeded otherwise)."""
    F = valid.shape[1]
    keep = np.ones(F, bool)
    linked = np.flatnonzero(valid.sum(axis=0) >= 2)
    if max_frames <= 0 or linked.size <= max_frames:
        return keep
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(linked, size=max_frames, replace=False))
    keep[:] = False
    keep[chosen] = True
    keep[valid.sum(axis=0) == 1] = True  # single views stay (they matter only with free intrinsics)
    return keep


def _output_dist(original: np.ndarray, dist8: np.ndarray) -> np.ndarray:
    """Distortion in the shortest OpenCV length (4, 5, 8) holding the original's and every non-zero term."""
    n = len(original)
    if np.any(dist8[5:] != 0):
        n = 8
    elif dist8[4] != 0:
        n = max(n, 5)
    return dist8[:n].copy()


def _stats_threshold(err: np.ndarray, k: float, floor: float) -> float:
    med = float(np.median(err))
    mad = 1.4826 * float(np.median(np.abs(err - med)))
    return max(med + k * mad, floor)


def calibrate_rig(obs: Observations, intrinsics: Sequence[Intrinsics], object_points: np.ndarray,
                  options: RigOptions | None = None, log: logging.Logger | None = None) -> RigCalibration:
    """Calibrate every camera's pose (and optionally refine intrinsics) from board observations.

    Args:
        obs: synchronised corners (C cameras, F frames, N corners).
        intrinsics: per camera of ``obs.cameras``, in that order.
        object_points: (N, 3) board corners in the board frame, metres.
        options: see :class:`RigOptions`.
        log: where warnings go.

    Raises:
        PosecapError: a camera never co-visible with another, cameras in unlinked groups, an
            unknown reference camera or floor frame, or a camera left without observations.
    """
    options = options or RigOptions()
    log = log or logging.getLogger("posecap")
    cams = list(obs.cameras)
    C = len(cams)
    if [i.name for i in intrinsics] != cams:
        raise ValueError("intrinsics must be given for obs.cameras, in that order")
    ref = 0 if options.reference in (None, "") else cams.index(options.reference) if options.reference in cams else -1
    if ref < 0:
        raise PosecapError(f"reference camera {options.reference!r} is not in the rig ({', '.join(cams)})")
    object_points = np.asarray(object_points, np.float64)
    Ks = [np.asarray(i.K, np.float64) for i in intrinsics]
    dists = [np.asarray(i.dist, np.float64) for i in intrinsics]
    warnings: list[str] = []

    poses = board_view_poses(obs, Ks, dists, object_points, options.check)
    dropped = [{"camera": cams[c], "frame": int(obs.frames[f]), "reason": r, "detail": d}
               for c, f, r, d in poses.dropped]
    keep_frames = _sample_frames(poses.valid, options.max_frames, options.seed)
    valid = poses.valid & keep_frames[None, :]
    graph = covisibility(valid, cams)
    cam_R, cam_t = chain_cameras(replace(poses, valid=valid), graph, ref)

    free = free_mask(cams, options.free_intrinsics)
    floor_pos = None
    if options.world == "floor_board":
        if options.floor_frame is None:
            raise PosecapError("world is floor_board but no floor_frame is set; name the frame showing the floor board")
        hits = np.flatnonzero(obs.frames == options.floor_frame)
        if hits.size == 0 or not poses.valid[:, hits[0]].any():
            raise PosecapError(f"floor_frame {options.floor_frame}: no camera holds a usable view of the board in "
                               "that frame; pick a frame where the board lies on the floor in view")
        floor_pos = int(hits[0])
        valid[:, floor_pos] = poses.valid[:, floor_pos]
    elif options.world != "first_camera":
        raise PosecapError(f"world must be first_camera or floor_board; got {options.world!r}")

    nviews = valid.sum(axis=0)
    single_ok = valid & free.any(axis=1)[:, None]
    use_frame = (nviews >= 2) | (single_ok.any(axis=0) & (nviews == 1))
    if floor_pos is not None:
        use_frame[floor_pos] = True
    for c, f in zip(*np.nonzero(valid & ~use_frame[None, :])):
        dropped.append({"camera": cams[c], "frame": int(obs.frames[f]), "reason": "not_covisible",
                        "detail": "no other camera holds a usable view in this frame"})
    board_frames = np.flatnonzero(use_frame)
    bR, bt = board_world_poses(replace(poses, valid=valid), cam_R, cam_t, board_frames)
    board_of = np.full(obs.frames.shape[0], -1)
    board_of[board_frames] = np.arange(board_frames.size)

    seen = obs.seen()
    vc, vf = np.nonzero(valid & use_frame[None, :])
    sel = seen[vc, vf]  # (V, N)
    obs_cam = np.repeat(vc, sel.sum(axis=1))
    obs_frame = np.repeat(vf, sel.sum(axis=1))
    obs_corner = np.nonzero(sel)[1]
    data = BAData(obs_cam.astype(np.int64), board_of[obs_frame].astype(np.int64), object_points[obs_corner],
                  obs.corners[obs_cam, obs_frame, obs_corner])
    intr = np.zeros((C, N_INTR))
    for c in range(C):
        intr[c, :4] = Ks[c][0, 0], Ks[c][1, 1], Ks[c][0, 2], Ks[c][1, 2]
        intr[c, 4:] = pad_dist(dists[c])
    state = BAState(rotation_to_rvec(cam_R), cam_t.copy(), intr, np.array([k[0, 1] for k in Ks]),
                    rotation_to_rvec(bR), bt.copy())
    r0 = residuals(data, state)
    initial_rms = float(np.sqrt(np.mean(np.sum(r0 * r0, axis=1))))

    ba_opts = BAOptions(fixed_camera=ref, free_intrinsics=free, loss=options.loss,
                        loss_scale_px=options.loss_scale_px, max_nfev=options.max_nfev, jacobian=options.jacobian)
    keep = np.ones(data.n_obs, bool)
    rounds = 0
    result: BAResult | None = None
    view_key = obs_cam * obs.frames.shape[0] + obs_frame
    while True:
        rounds += 1
        result = bundle_adjust(data.subset(keep), state, ba_opts)
        state = result.state
        if rounds > options.outlier_rounds:
            break
        err = np.linalg.norm(residuals(data, state), axis=1)
        thr = _stats_threshold(err[keep], options.outlier_k, options.outlier_floor_px)
        out = keep & (err > thr)
        if not out.any():
            break
        keep &= ~out
        counts = np.bincount(view_key[keep], minlength=C * obs.frames.shape[0])
        thin = keep & (counts[view_key] < options.check.min_corners)
        for key in np.unique(view_key[thin]):
            c, f = divmod(int(key), obs.frames.shape[0])
            dropped.append({"camera": cams[c], "frame": int(obs.frames[f]), "reason": "outlier",
                            "detail": f"fewer than {options.check.min_corners} corners left after outlier removal"})
        keep &= ~thin
    assert result is not None
    if not result.converged:
        if result.kept_initial:
            text = (f"bundle adjustment ended worse than it started (cost {result.extra.get('cost_reached', 0):.4g} > "
                    f"{result.cost_initial:.4g}); kept the initial rig")
        else:
            text = (f"bundle adjustment did not converge in {result.nfev} evaluations (last cost "
                    f"{result.cost_final:.4g}); raise calibrate_extrinsics.max_nfev or check the detections")
        warnings.append(text)
        log.warning("%s", text)
    for c in range(C):
        if not (keep & (obs_cam == c)).any():
            raise PosecapError(f"camera {cams[c]}: every observation was rejected as an outlier; check its "
                               "intrinsics and its detections")

    res = residuals(data, state)
    err2 = np.sum(res * res, axis=1)
    rms = {cams[c]: float(np.sqrt(np.mean(err2[keep & (obs_cam == c)]))) for c in range(C)}

    Rc = rodrigues(state.cam_rvec)
    tc = state.cam_t.copy()
    Rb = rodrigues(state.board_rvec)
    tb = state.board_t.copy()
    world = cams[ref]
    if floor_pos is not None:
        b = int(board_of[floor_pos])
        A, o = Rb[b] @ FLOOR_FLIP, tb[b].copy()
        tc = np.einsum("cij,j->ci", Rc, o) + tc
        Rc = Rc @ A
        Rb = np.einsum("ji,bjk->bik", A, Rb)
        tb = (tb - o) @ A
        world = "floor_board"
    cameras = []
    for c, cam in enumerate(cams):
        dist = _output_dist(dists[c], state.intr[c, 4:])
        cameras.append(Camera(cam, intrinsics[c].image_size, state.K(c), dist, Rc[c], tc[c]))
    rig = Rig(tuple(cameras), world=world)
    freed = {cams[c]: [INTRINSIC_PARAMS[j] for j in np.flatnonzero(free[c])] for c in range(C) if free[c].any()}
    return RigCalibration(rig, rms, graph, obs.frames, poses.valid, dropped, obs_cam, obs_frame, obs_corner, res, keep,
                          board_frames, Rb, tb, initial_rms, result, rounds, freed, warnings)
