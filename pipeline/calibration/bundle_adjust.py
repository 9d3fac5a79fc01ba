"""Global bundle adjustment of a camera rig over board observations, with an analytic sparse Jacobian.

The model, for an observation ``m`` of board corner ``P_m`` (board frame, metres) by camera
``c = cam[m]`` in board pose ``b = board[m]``::

    X_world = R(ω_b) P_m + τ_b                  board -> world (rotation vector ω_b, translation τ_b)
    X_cam   = R(ω_c) X_world + t_c              world -> camera (DESIGN.md convention)
    (x, y)  = X_cam[:2] / X_cam[2]
    (x_d, y_d) = distort((x, y); k1, k2, p1, p2, k3, k4, k5, k6)      OpenCV model
    u = fx x_d + s y_d + cx,   v = fy y_d + cy                          s: skew, kept fixed
    r_m = (u, v) - uv_m                                                  residual, pixels

The unknowns are every camera pose except the reference camera's (fixed: it fixes the gauge;
the metric scale comes from the board's square size through ``P_m``), every board pose, and the
intrinsics ``[fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6]`` that the per-camera, per-parameter
mask sets free. ``scipy.optimize.least_squares`` (trust-region reflective, LSMR steps) minimises
``Σ ρ(|r_m|²)`` with a robust loss ``ρ``; the Jacobian is analytic and sparse (each residual
depends on one camera and one board), or, on request, finite differences over ``jac_sparsity``.

The Rodrigues derivative uses the closed form of Gallego & Yezzi (2015)::

    ∂R/∂ω_i = (ω_i [ω]× + [ω × (I - R) e_i]×) R / |ω|²       ([e_i]× at ω = 0)

and the result is never worse than the start: when the robust cost at the end exceeds the
cost at the initial parameters, the initial parameters are returned (``kept_initial``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse
from scipy.optimize import least_squares

from pipeline.calibration.blas_threads import single_thread_blas
from pipeline.geometry.camera import distort, distort_jacobian

INTRINSIC_PARAMS: tuple[str, ...] = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")
"""Order of the 12 intrinsic parameters; entries 4.. are OpenCV's ``dist`` order (zero padded to 8)."""
N_INTR = len(INTRINSIC_PARAMS)
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
MIN_Z_M = 1e-3
LSMR_TOL = 1e-12
"""Stopping tolerances of the LSMR steps. SciPy's default (1e-6) leaves the steps so inexact that the
trust region degrades to zig-zagging gradient steps on a rig whose intrinsics are slightly off
(hundreds of evaluations instead of ~20)."""


# ---- rotations ------------------------------------------------------------------------------

def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices: (..., 3) -> (..., 3, 3) with ``skew(a) @ b == a × b``."""
    v = np.asarray(v, dtype=np.float64)
    z = np.zeros(v.shape[:-1])
    return np.stack([
        np.stack([z, -v[..., 2], v[..., 1]], axis=-1),
        np.stack([v[..., 2], z, -v[..., 0]], axis=-1),
        np.stack([-v[..., 1], v[..., 0], z], axis=-1),
    ], axis=-2)


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3), radians -> rotation matrices (..., 3, 3)."""
    rvec = np.asarray(rvec, dtype=np.float64)
    if rvec.shape[-1:] != (3,):
        raise ValueError(f"rvec must have shape (..., 3); got {rvec.shape}")
    theta = np.linalg.norm(rvec, axis=-1)
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    k = skew(rvec / safe[..., None])
    s = np.where(small, 0.0, np.sin(theta))[..., None, None]
    c = np.where(small, 0.0, 1.0 - np.cos(theta))[..., None, None]
    return np.eye(3) + s * k + c * (k @ k)


def rodrigues_jacobian(rvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrices and their derivatives: (..., 3) -> R (..., 3, 3), dR (..., 3, 3, 3).

    ``dR[..., i, :, :] = ∂R / ∂rvec_i`` (closed form of Gallego & Yezzi; ``[e_i]×`` at zero).
    """
    rvec = np.asarray(rvec, dtype=np.float64)
    R = rodrigues(rvec)
    theta2 = np.sum(rvec * rvec, axis=-1)
    small = theta2 < 1e-20
    eye = np.eye(3)
    dR = np.empty(rvec.shape[:-1] + (3, 3, 3))
    vx = skew(rvec)
    for i in range(3):
        col = eye[i] - R[..., :, i]  # (I - R) e_i
        term = rvec[..., i, None, None] * vx + skew(np.cross(rvec, col))
        with np.errstate(invalid="ignore", divide="ignore"):
            full = (term @ R) / np.where(small, 1.0, theta2)[..., None, None]
        dR[..., i, :, :] = np.where(small[..., None, None], skew(eye[i]), full)
    return R, dR


def rotation_to_rvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3) (via scipy, stable near π)."""
    from scipy.spatial.transform import Rotation

    R = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(R.shape[:-2] + (3,))


# ---- projection and its Jacobian --------------------------------------------------------------

def project_with_jacobian(points_cam: np.ndarray, intr: np.ndarray, skew_px: np.ndarray,
                          need_jacobian: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Project camera-frame points and differentiate.

    Args:
        points_cam: (M, 3) metres, camera frame. Depths below 1 mm are clamped (never NaN).
        intr: (M, 12) intrinsics per point, order :data:`INTRINSIC_PARAMS`.
        skew_px: (M,) skew ``K[0, 1]`` per point (a constant, not optimised).
        need_jacobian: also return the derivatives.

    Returns:
        uv (M, 2) distorted px; d uv / d points_cam (M, 2, 3); d uv / d intr (M, 2, 12).
    """
    z = np.maximum(points_cam[:, 2], MIN_Z_M)
    inv_z = 1.0 / z
    xy = points_cam[:, :2] * inv_z[:, None]
    dist8 = intr[:, 4:]
    xyd = distort(xy, dist8)
    fx, fy, cx, cy = intr[:, 0], intr[:, 1], intr[:, 2], intr[:, 3]
    uv = np.stack([fx * xyd[:, 0] + skew_px * xyd[:, 1] + cx, fy * xyd[:, 1] + cy], axis=-1)
    if not need_jacobian:
        return uv, None, None
    M = points_cam.shape[0]
    A = np.zeros((M, 2, 2))
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 1] = fx, skew_px, fy
    jd = distort_jacobian(xy, dist8)
    dxy = np.zeros((M, 2, 3))
    dxy[:, 0, 0] = inv_z
    dxy[:, 1, 1] = inv_z
    dxy[:, 0, 2] = -xy[:, 0] * inv_z
    dxy[:, 1, 2] = -xy[:, 1] * inv_z
    d_pc = A @ jd @ dxy
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    r4, r6 = r2 * r2, r2 * r2 * r2
    k1, k2, _, _, k3, k4, k5, k6 = dist8.T
    num = 1.0 + k1 * r2 + k2 * r4 + k3 * r6
    den = 1.0 + k4 * r2 + k5 * r4 + k6 * r6
    d_dist = np.zeros((M, 2, 8))  # d (xd, yd) / d dist8
    for j, rp in ((0, r2), (1, r4), (4, r6)):
        d_dist[:, 0, j] = x * rp / den
        d_dist[:, 1, j] = y * rp / den
    for j, rp in ((5, r2), (6, r4), (7, r6)):
        g = -num * rp / (den * den)
        d_dist[:, 0, j] = x * g
        d_dist[:, 1, j] = y * g
    d_dist[:, 0, 2] = 2.0 * x * y
    d_dist[:, 1, 2] = r2 + 2.0 * y * y
    d_dist[:, 0, 3] = r2 + 2.0 * x * x
    d_dist[:, 1, 3] = 2.0 * x * y
    d_intr = np.zeros((M, 2, N_INTR))
    d_intr[:, 0, 0] = xyd[:, 0]
    d_intr[:, 1, 1] = xyd[:, 1]
    d_intr[:, 0, 2] = 1.0
    d_intr[:, 1, 3] = 1.0
    d_intr[:, :, 4:] = A @ d_dist
    return uv, d_pc, d_intr


# ---- problem, state, options ---------------------------------------------------------------------

@dataclass(frozen=True)
class BAData:
    """The observations of one bundle adjustment (M observed corners).

    Attributes:
        cam: int (M,) camera index of each observation (0 .. C-1).
        board: int (M,) board-pose index of each observation (0 .. B-1).
        points_board: float64 (M, 3) the corner in the board frame, metres.
        uv_px: float64 (M, 2) the observed distorted pixel position.
    """

    cam: np.ndarray
    board: np.ndarray
    points_board: np.ndarray
    uv_px: np.ndarray

    def __post_init__(self) -> None:
        M = np.asarray(self.cam).shape[0]
        for key, shape in (("cam", (M,)), ("board", (M,)), ("points_board", (M, 3)), ("uv_px", (M, 2))):
            arr = np.asarray(getattr(self, key))
            if arr.shape != shape:
                raise ValueError(f"BAData.{key} must have shape {shape}; got {arr.shape}")
        if M and not np.isfinite(self.uv_px).all():
            raise ValueError("BAData.uv_px holds NaN; pass only observed corners")

    @property
    def n_obs(self) -> int:
        return int(self.cam.shape[0])

    def subset(self, keep: np.ndarray) -> BAData:
        """The observations where ``keep`` (M,) bool is true."""
        return BAData(self.cam[keep], self.board[keep], self.points_board[keep], self.uv_px[keep])


@dataclass(frozen=True)
class BAState:
    """The parameters: C cameras (world -> camera) and B boards (board -> world).

    Attributes:
        cam_rvec, cam_t: float64 (C, 3) rotation vectors and translations (metres).
        intr: float64 (C, 12) intrinsics in :data:`INTRINSIC_PARAMS` order.
        skew_px: float64 (C,) ``K[0, 1]`` (fixed).
        board_rvec, board_t: float64 (B, 3).
    """

    cam_rvec: np.ndarray
    cam_t: np.ndarray
    intr: np.ndarray
    skew_px: np.ndarray
    board_rvec: np.ndarray
    board_t: np.ndarray

    @property
    def n_cams(self) -> int:
        return int(self.cam_rvec.shape[0])

    @property
    def n_boards(self) -> int:
        return int(self.board_rvec.shape[0])

    def K(self, c: int) -> np.ndarray:  # noqa: N802 - the standard symbol
        """(3, 3) intrinsic matrix of camera ``c``."""
        fx, fy, cx, cy = self.intr[c, :4]
        return np.array([[fx, self.skew_px[c], cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class BAOptions:
    """Settings of :func:`bundle_adjust`.

    Attributes:
        fixed_camera: index of the camera whose pose is held (the gauge).
        free_intrinsics: (C, 12) bool, which intrinsics are optimised; None = none.
        loss: scipy robust loss (linear, huber, soft_l1, cauchy, arctan).
        loss_scale_px: inlier scale of the loss, pixels.
        max_nfev: most function evaluations.
        ftol, xtol, gtol: scipy's stopping tolerances.
        jacobian: ``analytic`` (sparse, exact) or ``2-point`` (finite differences over jac_sparsity).
    """

    fixed_camera: int = 0
    free_intrinsics: np.ndarray | None = None
    loss: str = "huber"
    loss_scale_px: float = 1.0
    max_nfev: int = 200
    ftol: float = 1e-8
    xtol: float = 1e-10
    gtol: float = 1e-10
    jacobian: str = "analytic"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.jacobian not in ("analytic", "2-point"):
            raise ValueError(f"jacobian must be 'analytic' or '2-point'; got {self.jacobian!r}")
        if not self.loss_scale_px > 0:
            raise ValueError(f"loss_scale_px must be > 0; got {self.loss_scale_px}")


@dataclass(frozen=True)
class BAResult:
    """What :func:`bundle_adjust` returns.

    Attributes:
        state: the optimised parameters (or the initial ones when ``kept_initial``).
        residuals_px: float64 (M, 2) predicted minus observed, at ``state``.
        cost_initial, cost_final: robust cost ``0.5 Σ ρ`` at the start and at ``state``.
        nfev: function evaluations.
        status: scipy's status (0 = evaluation limit reached; > 0 converged).
        message: scipy's message.
        kept_initial: the optimisation ended worse than it started; the start was kept.
        seconds: wall time of the solve.
    """

    state: BAState
    residuals_px: np.ndarray
    cost_initial: float
    cost_final: float
    nfev: int
    status: int
    message: str
    kept_initial: bool
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status > 0 and not self.kept_initial

    @property
    def rms_px(self) -> float:
        r = self.residuals_px
        return float(np.sqrt(np.mean(np.sum(r * r, axis=1)))) if r.size else float("nan")


# ---- the problem ---------------------------------------------------------------------------------

class _Problem:
    """Packing of the parameter vector and the sparse Jacobian's fixed structure."""

    def __init__(self, data: BAData, state: BAState, options: BAOptions) -> None:
        C, B = state.n_cams, state.n_boards
        if not 0 <= options.fixed_camera < C:
            raise ValueError(f"fixed_camera {options.fixed_camera} out of range for {C} cameras")
        if data.n_obs and (data.cam.max() >= C or data.board.max() >= B or data.cam.min() < 0 or data.board.min() < 0):
            raise ValueError("BAData indices out of range of the state's cameras or boards")
        free = np.zeros((C, N_INTR), bool) if options.free_intrinsics is None else np.asarray(options.free_intrinsics)
        if free.shape != (C, N_INTR):
            raise ValueError(f"free_intrinsics must have shape ({C}, {N_INTR}); got {free.shape}")
        self.data, self.state0, self.options, self.free = data, state, options, free.astype(bool)
        self.cam_col = np.full(C, -1, np.int64)
        posed = [c for c in range(C) if c != options.fixed_camera]
        self.cam_col[posed] = 6 * np.arange(len(posed))
        n = 6 * len(posed)
        self.intr_col = np.full((C, N_INTR), -1, np.int64)
        nf = int(self.free.sum())
        self.intr_col[self.free] = n + np.arange(nf)
        n += nf
        self.board_col0 = n
        self.n_params = n + 6 * B
        self._structure()

    def _structure(self) -> None:
        """Row/column indices of every non-zero, in the order :meth:`jacobian` fills them."""
        d = self.data
        M = d.n_obs
        rows2 = 2 * np.arange(M)[:, None] + np.arange(2)[None, :]  # (M, 2)
        posed = self.cam_col[d.cam] >= 0
        self.posed = posed
        r_cam = np.broadcast_to(rows2[posed][:, :, None], (int(posed.sum()), 2, 6))
        c_cam = np.broadcast_to((self.cam_col[d.cam[posed]][:, None] + np.arange(6))[:, None, :], r_cam.shape)
        fm = self.free[d.cam]  # (M, 12)
        self.intr_sel = np.broadcast_to(fm[:, None, :], (M, 2, N_INTR))
        r_int = np.broadcast_to(rows2[:, :, None], (M, 2, N_INTR))[self.intr_sel]
        c_int = np.broadcast_to(self.intr_col[d.cam][:, None, :], (M, 2, N_INTR))[self.intr_sel]
        r_brd = np.broadcast_to(rows2[:, :, None], (M, 2, 6))
        c_brd = np.broadcast_to((self.board_col0 + 6 * d.board[:, None] + np.arange(6))[:, None, :], (M, 2, 6))
        rows = np.concatenate([r_cam.ravel(), r_int.ravel(), r_brd.ravel()])
        cols = np.concatenate([c_cam.ravel(), c_int.ravel(), c_brd.ravel()])
        order = np.lexsort((cols, rows))
        self.order = order
        self.indices = cols[order].astype(np.int32)
        self.indptr = np.searchsorted(rows[order], np.arange(2 * M + 1)).astype(np.int32)
        self.shape = (2 * M, self.n_params)

    def sparsity(self) -> scipy.sparse.csr_matrix:
        """The Jacobian's non-zero pattern (for ``jac_sparsity``)."""
        ones = np.ones(self.indices.shape[0], np.int8)
        return scipy.sparse.csr_matrix((ones, self.indices, self.indptr), shape=self.shape)

    def pack(self, state: BAState) -> np.ndarray:
        x = np.empty(self.n_params)
        for c in range(state.n_cams):
            if self.cam_col[c] >= 0:
                x[self.cam_col[c]:self.cam_col[c] + 3] = state.cam_rvec[c]
                x[self.cam_col[c] + 3:self.cam_col[c] + 6] = state.cam_t[c]
        x[self.intr_col[self.free]] = state.intr[self.free]
        boards = np.concatenate([state.board_rvec, state.board_t], axis=1)
        x[self.board_col0:] = boards.ravel()
        return x

    def unpack(self, x: np.ndarray) -> BAState:
        s = self.state0
        cam_rvec, cam_t, intr = s.cam_rvec.copy(), s.cam_t.copy(), s.intr.copy()
        for c in range(s.n_cams):
            if self.cam_col[c] >= 0:
                cam_rvec[c] = x[self.cam_col[c]:self.cam_col[c] + 3]
                cam_t[c] = x[self.cam_col[c] + 3:self.cam_col[c] + 6]
        intr[self.free] = x[self.intr_col[self.free]]
        boards = x[self.board_col0:].reshape(-1, 6)
        return replace(s, cam_rvec=cam_rvec, cam_t=cam_t, intr=intr, board_rvec=boards[:, :3].copy(),
                       board_t=boards[:, 3:].copy())

    def _forward(self, state: BAState, need_jacobian: bool):
        d = self.data
        if need_jacobian:
            Rc, dRc = rodrigues_jacobian(state.cam_rvec)
            Rb, dRb = rodrigues_jacobian(state.board_rvec)
        else:
            Rc, Rb, dRc, dRb = rodrigues(state.cam_rvec), rodrigues(state.board_rvec), None, None
        Rb_m = Rb[d.board]
        Rc_m = Rc[d.cam]
        xw = np.einsum("mij,mj->mi", Rb_m, d.points_board) + state.board_t[d.board]
        xc = np.einsum("mij,mj->mi", Rc_m, xw) + state.cam_t[d.cam]
        uv, d_pc, d_intr = project_with_jacobian(xc, state.intr[d.cam], state.skew_px[d.cam], need_jacobian)
        res = uv - d.uv_px
        if not need_jacobian:
            return res, None
        M = d.n_obs
        j_cam = np.empty((M, 2, 6))
        dxc_dwc = np.einsum("mkij,mj->mik", dRc[d.cam], xw)  # (M, 3, 3): d xc / d cam rvec
        j_cam[:, :, :3] = d_pc @ dxc_dwc
        j_cam[:, :, 3:] = d_pc
        j_brd = np.empty((M, 2, 6))
        dxw_dwb = np.einsum("mkij,mj->mik", dRb[d.board], d.points_board)  # d xw / d board rvec
        d_pw = d_pc @ Rc_m  # d uv / d xw
        j_brd[:, :, :3] = d_pw @ dxw_dwb
        j_brd[:, :, 3:] = d_pw
        data = np.concatenate([j_cam[self.posed].ravel(), d_intr[self.intr_sel].ravel(), j_brd.ravel()])
        jac = scipy.sparse.csr_matrix((data[self.order], self.indices, self.indptr), shape=self.shape)
        return res, jac

    def residuals(self, x: np.ndarray) -> np.ndarray:
        return self._forward(self.unpack(x), False)[0].ravel()

    def jacobian(self, x: np.ndarray) -> scipy.sparse.csr_matrix:
        return self._forward(self.unpack(x), True)[1]


def robust_cost(residuals_px: np.ndarray, loss: str, scale: float) -> float:
    """``0.5 Σ scale² ρ(r_i² / scale²)`` over every residual component, as scipy's least_squares defines it."""
    z = np.asarray(residuals_px, dtype=np.float64).ravel() ** 2 / scale**2
    if loss == "linear":
        rho = z
    elif loss == "huber":
        rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
    elif loss == "soft_l1":
        rho = 2 * (np.sqrt(1 + z) - 1)
    elif loss == "cauchy":
        rho = np.log1p(z)
    elif loss == "arctan":
        rho = np.arctan(z)
    else:
        raise ValueError(f"unknown loss {loss!r}")
    return float(0.5 * scale**2 * np.sum(rho))


def residuals(data: BAData, state: BAState) -> np.ndarray:
    """Predicted minus observed pixels (M, 2) for ``state``."""
    return _Problem(data, state, BAOptions(fixed_camera=0))._forward(state, False)[0]


def jacobian(data: BAData, state: BAState, options: BAOptions) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
    """The parameter vector and the analytic sparse Jacobian (2M, n) at ``state`` (for tests)."""
    prob = _Problem(data, state, options)
    x = prob.pack(state)
    return x, prob.jacobian(x)


def parameter_vector(data: BAData, state: BAState, options: BAOptions):
    """``(x, residuals_fn)``: the packed parameters and ``x -> (2M,)`` residuals (for tests)."""
    prob = _Problem(data, state, options)
    return prob.pack(state), prob.residuals


def bundle_adjust(data: BAData, state: BAState, options: BAOptions | None = None) -> BAResult:
    """Minimise the robust reprojection cost over camera poses, board poses and free intrinsics.

    Args:
        data: the observations (M).
        state: the starting parameters (C cameras, B boards); indices in ``data`` refer to them.
        options: see :class:`BAOptions`.

    Returns:
        A :class:`BAResult`; never worse than ``state`` in robust cost.
    """
    options = options or BAOptions()
    prob = _Problem(data, state, options)
    x0 = prob.pack(state)
    r0 = prob.residuals(x0)
    cost0 = robust_cost(r0, options.loss, options.loss_scale_px)
    t0 = time.perf_counter()
    if data.n_obs == 0 or prob.n_params == 0:
        return BAResult(state, r0.reshape(-1, 2), cost0, cost0, 0, 1, "nothing to optimise", False, 0.0)
    kwargs = dict(method="trf", tr_solver="lsmr", loss=options.loss, f_scale=options.loss_scale_px,
                  x_scale="jac", max_nfev=options.max_nfev, ftol=options.ftol, xtol=options.xtol,
                  gtol=options.gtol, verbose=0, tr_options={"atol": LSMR_TOL, "btol": LSMR_TOL})
    with single_thread_blas():
        if options.jacobian == "analytic":
            sol = least_squares(prob.residuals, x0, jac=prob.jacobian, **kwargs)
        else:
            sol = least_squares(prob.residuals, x0, jac="2-point", jac_sparsity=prob.sparsity(), **kwargs)
    seconds = time.perf_counter() - t0
    r1 = sol.fun
    cost1 = robust_cost(r1, options.loss, options.loss_scale_px)
    if not np.isfinite(cost1) or cost1 > cost0:
        return BAResult(state, r0.reshape(-1, 2), cost0, cost0, int(sol.nfev), int(sol.status), str(sol.message),
                        True, seconds, {"cost_reached": float(cost1)})
    return BAResult(prob.unpack(sol.x), r1.reshape(-1, 2), cost0, cost1, int(sol.nfev), int(sol.status),
                    str(sol.message), False, seconds)
