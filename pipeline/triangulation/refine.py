"""Robust nonlinear refinement of triangulated skeletons over time.

Unknowns: every finite 3D joint ``X[t, p, j]`` (metres). Residuals, all in "pixel units":

- reprojection: ``sqrt(w) * (project_c(X) - uv)`` for every inlier observation (pixels);
- bone length: ``bone_weight * (|X_a - X_b| - L_pb) / 1 cm`` for each bone of the skeleton, with
  ``L_pb`` the person's median bone length over the initial estimate;
- smoothness: ``smooth_weight * (X[t-1] - 2 X[t] + X[t+1]) / 1 cm`` (acceleration per frame²).

So a weight of 1 makes a 1 cm bone-length deviation (or a 1 cm/frame² acceleration) cost as much
as a 1 px reprojection error. The problem is solved by ``scipy.optimize.least_squares`` (trust
region, LSMR) with a robust loss and an analytic sparse Jacobian, in chunks of frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares
from tqdm import tqdm

from pipeline.geometry.rig import Rig

CM = 0.01


@dataclass(frozen=True)
class RefineOptions:
    """Settings of :func:`refine`.

    Attributes:
        bone_weight: 1 = a 1 cm bone-length deviation costs as much as 1 px of reprojection.
        smooth_weight: 1 = a 1 cm/frame² joint acceleration costs as much as 1 px.
        loss: scipy robust loss (``linear``, ``huber``, ``soft_l1``, ``cauchy``, ``arctan``).
        loss_scale_px: residual size where the robust loss starts to flatten, pixel units.
        max_iterations: function evaluations per chunk.
        chunk_frames: frames solved together.
    """

    bone_weight: float = 1.0
    smooth_weight: float = 1.0
    loss: str = "soft_l1"
    loss_scale_px: float = 5.0
    max_iterations: int = 30
    chunk_frames: int = 400


@dataclass(frozen=True)
class Problem:
    """A refinement problem in flat form (see :func:`build_problem`)."""

    x0: np.ndarray
    fun: Callable[[np.ndarray], np.ndarray]
    jac: Callable[[np.ndarray], sp.csr_matrix]
    var_index: np.ndarray  # (T, P, J) -> variable point index, -1 if not a variable


def bone_lengths(points: np.ndarray, bones: Sequence[tuple[int, int]]) -> np.ndarray:
    """(T, P, J, 3) -> (P, n_bones) median bone lengths over frames (NaN if never seen)."""
    b = np.asarray(bones, dtype=int).reshape(-1, 2)
    lengths = np.linalg.norm(points[:, :, b[:, 0]] - points[:, :, b[:, 1]], axis=-1)  # (T, P, nb)
    out = np.full(lengths.shape[1:], np.nan)
    ok = np.isfinite(lengths).any(0)
    if ok.any():
        out[ok] = np.nanmedian(lengths[:, ok], axis=0)
    return out


def build_problem(rig: Rig, points: np.ndarray, uv: np.ndarray, weights: np.ndarray,
                  bones: Sequence[tuple[int, int]], options: RefineOptions,
                  lengths: np.ndarray | None = None) -> Problem:
    """Assemble residual and Jacobian functions.

    Args:
        points: (T, P, J, 3) initial joints, NaN where unknown (those are not variables).
        uv: (C, T, P, J, 2) observations in distorted pixels.
        weights: (C, T, P, J) observation weights; 0 = not used (e.g. an outlier view).
        bones: skeleton bones as joint index pairs.
        lengths: (P, n_bones) target bone lengths; median of ``points`` if None.
    """
    T, P, J, _ = points.shape
    C = len(rig)
    finite = np.isfinite(points).all(-1)
    var_index = np.full((T, P, J), -1, dtype=np.int64)
    var_index[finite] = np.arange(int(finite.sum()))
    n_var = int(finite.sum())
    x0 = points[finite].reshape(-1).astype(np.float64)

    # Reprojection terms, grouped by camera.
    obs_ok = (weights > 0) & finite[None] & np.isfinite(uv).all(-1)
    cams, tt, pp, jj = np.nonzero(obs_ok)
    obs_var = var_index[tt, pp, jj]
    obs_uv = uv[cams, tt, pp, jj]
    obs_sw = np.sqrt(weights[cams, tt, pp, jj])
    cam_slices = np.searchsorted(cams, np.arange(C + 1))
    n_obs = cams.size

    # Bone terms.
    b = np.asarray(bones, dtype=int).reshape(-1, 2)
    if lengths is None:
        lengths = bone_lengths(points, b)
    va, vb = var_index[:, :, b[:, 0]], var_index[:, :, b[:, 1]]  # (T, P, nb)
    target = np.broadcast_to(lengths[None], va.shape)
    bone_ok = (va >= 0) & (vb >= 0) & np.isfinite(target) & (options.bone_weight > 0)
    ba, bb, bl = va[bone_ok], vb[bone_ok], target[bone_ok]
    wb = options.bone_weight / CM

    # Smoothness terms.
    if options.smooth_weight > 0 and T >= 3:
        v0, v1, v2 = var_index[:-2], var_index[1:-1], var_index[2:]
        s_ok = (v0 >= 0) & (v1 >= 0) & (v2 >= 0)
        s0, s1, s2 = v0[s_ok], v1[s_ok], v2[s_ok]
    else:
        s0 = s1 = s2 = np.zeros(0, dtype=np.int64)
    ws = options.smooth_weight / CM

    n_res = 2 * n_obs + ba.size + 3 * s0.size
    r_bone0 = 2 * n_obs
    r_smooth0 = r_bone0 + ba.size

    # Sparsity pattern (fixed); data filled per call in the same order.
    obs_rows = (2 * np.arange(n_obs))[:, None, None] + np.arange(2)[None, :, None]  # (n_obs, 2, 1)
    obs_cols = 3 * obs_var[:, None, None] + np.arange(3)[None, None, :]
    rows = [np.broadcast_to(obs_rows, (n_obs, 2, 3)).ravel(),
            np.broadcast_to(obs_cols, (n_obs, 2, 3)).ravel()]
    bone_rows = np.repeat(r_bone0 + np.arange(ba.size), 6)
    xyz = np.arange(3)
    bone_cols = np.concatenate([3 * ba[:, None] + xyz, 3 * bb[:, None] + xyz], axis=1).ravel()
    sm_rows = np.repeat(r_smooth0 + 3 * np.arange(s0.size)[:, None] + np.arange(3), 3, axis=1).ravel()
    sm_cols = np.stack([3 * s0[:, None] + np.arange(3), 3 * s1[:, None] + np.arange(3),
                        3 * s2[:, None] + np.arange(3)], axis=-1).ravel()
    all_rows = np.concatenate([rows[0], bone_rows, sm_rows])
    all_cols = np.concatenate([rows[1], bone_cols, sm_cols])
    sm_data = np.broadcast_to(ws * np.array([1.0, -2.0, 1.0]), (s0.size, 3, 3)).ravel()

    order_obs = np.arange(n_obs)

    def project_all(x: np.ndarray, with_jac: bool) -> tuple[np.ndarray, np.ndarray | None]:
        X = x.reshape(-1, 3)
        proj = np.empty((n_obs, 2))
        jac = np.empty((n_obs, 2, 3)) if with_jac else None
        for c in range(C):
            sl = order_obs[cam_slices[c]:cam_slices[c + 1]]
            if sl.size == 0:
                continue
            pts = X[obs_var[sl]]
            if with_jac:
                proj[sl], jac[sl] = rig.cameras[c].project_jacobian(pts)
            else:
                proj[sl] = rig.cameras[c].project(pts)
        return proj, jac

    def fun(x: np.ndarray) -> np.ndarray:
        X = x.reshape(-1, 3)
        proj, _ = project_all(x, False)
        r_obs = (obs_sw[:, None] * (proj - obs_uv)).ravel()
        d = X[ba] - X[bb]
        r_bone = wb * (np.linalg.norm(d, axis=-1) - bl)
        r_sm = (ws * (X[s0] - 2.0 * X[s1] + X[s2])).ravel()
        out = np.concatenate([r_obs, r_bone, r_sm])
        return np.nan_to_num(out, nan=0.0)

    def jac(x: np.ndarray) -> sp.csr_matrix:
        X = x.reshape(-1, 3)
        _, jo = project_all(x, True)
        d_obs = (obs_sw[:, None, None] * jo).ravel()
        d = X[ba] - X[bb]
        norm = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
        u = wb * d / norm
        d_bone = np.concatenate([u, -u], axis=1).ravel()
        data = np.nan_to_num(np.concatenate([d_obs, d_bone, sm_data]))
        return sp.csr_matrix((data, (all_rows, all_cols)), shape=(n_res, 3 * n_var))

    return Problem(x0=x0, fun=fun, jac=jac, var_index=var_index)


def refine(rig: Rig, points: np.ndarray, uv: np.ndarray, weights: np.ndarray,
           bones: Sequence[tuple[int, int]], options: RefineOptions,
           show_progress: bool = False) -> np.ndarray:
    """Refine (T, P, J, 3) joints against their observations, bone lengths and smoothness.

    Unknown joints (NaN) stay NaN. Returns a new array; see :func:`build_problem` for the inputs.
    """
    T, P = points.shape[:2]
    every_slot = np.broadcast_to(np.arange(P), (T, P))  # slot p of every frame is track p
    return refine_tracks(rig, points, TrackObservations(uv, weights, every_slot, P), bones, options, show_progress)


@dataclass(frozen=True)
class TrackObservations:
    """Every track's observations, kept in per-frame detection slots (no dense per-track copy).

    A dense (C, T, P, J, 2) array over all the tracks of a long take grows with frames x tracks
    (10 000 frames x 661 tracks x 4 cameras was 6.7 GiB); these slot arrays grow with frames only,
    and :meth:`dense` builds the per-track arrays of one chunk of frames at a time.

    Attributes:
        uv: (C, T, K, J, 2) observations of each frame's associated people, distorted pixels.
        weights: (C, T, K, J) their weights, 0 where not used (missing or an outlier view).
        track_of: (T, K) track of each slot, -1 for none.
        n_tracks: P.
    """

    uv: np.ndarray
    weights: np.ndarray
    track_of: np.ndarray
    n_tracks: int

    def tracks_in(self, t0: int, t1: int) -> np.ndarray:
        """Sorted track indices present in frames [t0, t1)."""
        sub = self.track_of[t0:t1]
        return np.unique(sub[sub >= 0])

    def local_index(self, t0: int, t1: int, tracks: np.ndarray) -> np.ndarray:
        """(t1 - t0, K) index of each slot's track within ``tracks`` (sorted), -1 for none or another track."""
        local = np.full(max(self.n_tracks, 1), -1, dtype=np.int64)
        local[tracks] = np.arange(len(tracks))
        sub = self.track_of[t0:t1]
        return np.where(sub >= 0, local[np.clip(sub, 0, None)], -1)

    def dense(self, t0: int, t1: int, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uv (C, t1 - t0, len(tracks), J, 2) NaN-filled, weights (C, t1 - t0, len(tracks), J)) of ``tracks``."""
        C, _, _, J, _ = self.uv.shape
        lt = self.local_index(t0, t1, tracks)
        t_idx, k_idx = np.nonzero(lt >= 0)
        uv = np.full((C, t1 - t0, len(tracks), J, 2), np.nan)
        w = np.zeros((C, t1 - t0, len(tracks), J))
        uv[:, t_idx, lt[t_idx, k_idx]] = self.uv[:, t0 + t_idx, k_idx]
        w[:, t_idx, lt[t_idx, k_idx]] = self.weights[:, t0 + t_idx, k_idx]
        return uv, w


def refine_tracks(rig: Rig, points: np.ndarray, obs: TrackObservations, bones: Sequence[tuple[int, int]],
                  options: RefineOptions, show_progress: bool = False,
                  lengths: np.ndarray | None = None) -> np.ndarray:
    """:func:`refine` with the observations in slot form: memory grows with a chunk, not with the take.

    Each chunk of ``options.chunk_frames`` frames solves the tracks present in it (the others have
    no variables there); chunks are independent given the take's ``lengths``, so the triangulate
    stage solves them one block at a time (:mod:`pipeline.triangulation.take`). points: (T, P, J, 3);
    lengths: (P, n_bones) bone lengths (None = measured on ``points``); returns a new array.
    """
    T = points.shape[0]
    out = points.astype(np.float64, copy=True)
    lengths = bone_lengths(points, bones) if lengths is None else lengths
    starts = list(range(0, T, max(1, options.chunk_frames)))
    for t0 in tqdm(starts, desc="refine", unit="chunk", disable=not show_progress or len(starts) < 2):
        t1 = min(T, t0 + options.chunk_frames)
        tracks = obs.tracks_in(t0, t1)
        if tracks.size == 0:
            continue
        uv, w = obs.dense(t0, t1, tracks)
        out[t0:t1, tracks] = refine_chunk(rig, points[t0:t1, tracks], uv, w, bones, options, lengths[tracks])
    return out


def refine_chunk(rig: Rig, points: np.ndarray, uv: np.ndarray, weights: np.ndarray,
                 bones: Sequence[tuple[int, int]], options: RefineOptions, lengths: np.ndarray) -> np.ndarray:
    """One chunk of :func:`refine` (frames solved together), given the whole take's bone ``lengths``.

    Chunks are independent, so they may be solved in any order or in parallel. Returns the
    chunk's (T, P, J, 3) refined joints.
    """
    out = points.astype(np.float64, copy=True)
    prob = build_problem(rig, points, uv, weights, bones, options, lengths)
    if prob.x0.size == 0:
        return out
    res = least_squares(prob.fun, prob.x0, jac=prob.jac, method="trf", tr_solver="lsmr",
                        loss=options.loss, f_scale=options.loss_scale_px, max_nfev=options.max_iterations,
                        x_scale=1.0, xtol=1e-6, ftol=1e-6, gtol=1e-8)
    out[prob.var_index >= 0] = res.x.reshape(-1, 3)
    return out
