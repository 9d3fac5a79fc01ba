"""Compare a session's artifacts with synthetic ground truth (used by the demo and the tests).

Each function reads files only, returns a small dataclass of figures, and returns None when the
artifact it needs has not been produced, so that no figure is ever reported that the pipeline
did not compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts import ArraySpec, read_npz, read_yaml


@dataclass(frozen=True)
class CropFigures:
    """Detected tile rectangles against the generator's, in pixels."""

    tiles: int
    max_rect_error_px: float


@dataclass(frozen=True)
class IntrinsicsFigures:
    """Per camera: relative focal error (%), principal point error (px), solve RMS (px)."""

    focal_error_pct: dict[str, float]
    principal_point_error_px: dict[str, float]
    rms_px: dict[str, float]


@dataclass(frozen=True)
class RigFigures:
    """Camera centres (mm) and rotations (deg) after a similarity alignment to ground truth."""

    centre_error_mm: dict[str, float]
    rotation_error_deg: dict[str, float]


@dataclass(frozen=True)
class Pose3dFigures:
    """Mean per-joint position error (mm) over joints both present, and the people found."""

    mpjpe_mm: float
    people_found: int
    people_true: int
    joints_compared: int


def crop_figures(session_dir: Path, truth_dir: Path) -> CropFigures | None:
    session_yaml = session_dir / "session.yaml"
    if not session_yaml.is_file():
        return None
    session = read_yaml(session_yaml, "session@1")
    truth = read_yaml(truth_dir / "mosaics.yaml", "synth_mosaics@1")
    true_rects: dict[tuple[str, str], list[int]] = {}
    for path, entry in truth["files"].items():
        for cam, rect in zip(entry["cameras"], entry["rects"]):
            true_rects[(Path(path).as_posix(), cam)] = rect
    errors = []
    for rec in session["recordings"].values():
        for cam, info in rec["cameras"].items():
            src = Path(info["source"]).as_posix()
            match = [v for (p, c), v in true_rects.items() if c == cam and src.endswith(p)]
            if match:
                errors.append(np.abs(np.subtract(info["crop_rect"], match[0])).max())
    if not errors:
        return None
    return CropFigures(tiles=len(errors), max_rect_error_px=float(max(errors)))


def intrinsics_figures(session_dir: Path, truth_dir: Path) -> IntrinsicsFigures | None:
    folder = session_dir / "calib" / "intrinsics"
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        return None
    truth = read_yaml(truth_dir / "rig.yaml", "rig@1")["cameras"]
    focal, pp, rms = {}, {}, {}
    for f in files:
        cam = f.stem
        if cam not in truth:
            continue
        est = read_yaml(f, "intrinsics@1")
        K, Kt = np.asarray(est["K"], float), np.asarray(truth[cam]["K"], float)
        focal[cam] = float(100 * np.max(np.abs(np.diag(K)[:2] / np.diag(Kt)[:2] - 1)))
        pp[cam] = float(np.linalg.norm(K[:2, 2] - Kt[:2, 2]))
        rms[cam] = float(est.get("rms_px", np.nan))
    return IntrinsicsFigures(focal, pp, rms)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: s, R, t minimising |dst - (s R src + t)|² for (N, 3) point sets."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / a.var(0).sum())
    return s, R, mu_d - s * R @ mu_s


def _rigs(session_dir: Path, truth_dir: Path) -> tuple[dict, dict, list[str]] | None:
    rig_path = session_dir / "calib" / "rig.yaml"
    if not rig_path.is_file():
        return None
    est = read_yaml(rig_path, "rig@1")["cameras"]
    truth = read_yaml(truth_dir / "rig.yaml", "rig@1")["cameras"]
    names = [c for c in est if c in truth]
    return (est, truth, names) if len(names) >= 3 else None


def _centres(rig: dict, names: list[str]) -> np.ndarray:
    """Camera centres in the rig's world frame, (N, 3) metres."""
    return np.array([-np.asarray(rig[c]["R"]).T @ np.asarray(rig[c]["t"]) for c in names])


def rig_alignment(session_dir: Path, truth_dir: Path) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Similarity (s, R, t) taking the calibrated world frame to the ground-truth one, from camera centres."""
    rigs = _rigs(session_dir, truth_dir)
    if rigs is None:
        return None
    est, truth, names = rigs
    return _similarity(_centres(est, names), _centres(truth, names))


def rig_figures(session_dir: Path, truth_dir: Path) -> RigFigures | None:
    rigs = _rigs(session_dir, truth_dir)
    if rigs is None:
        return None
    est, truth, names = rigs
    c_est, c_true = _centres(est, names), _centres(truth, names)
    s, R_al, t_al = _similarity(c_est, c_true)
    c_err = np.linalg.norm(s * c_est @ R_al.T + t_al - c_true, axis=1) * 1000
    rot_err = {}
    for c in names:
        R_est = np.asarray(est[c]["R"]) @ R_al.T  # world(true) -> cam
        cos = (np.trace(R_est.T @ np.asarray(truth[c]["R"])) - 1) / 2
        rot_err[c] = float(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return RigFigures(dict(zip(names, map(float, c_err))), rot_err)


def pose3d_figures(session_dir: Path, truth_dir: Path) -> Pose3dFigures | None:
    path = session_dir / "pose3d" / "skeletons.npz"
    if not path.is_file():
        return None
    from scipy.optimize import linear_sum_assignment

    est = read_npz(path, {"joints": ArraySpec(("T", None, None, 3))})["joints"].astype(np.float64)
    gt = read_npz(truth_dir / "people.npz", {"joints": ArraySpec((None, None, None, 3))})["joints"]
    align = rig_alignment(session_dir, truth_dir)
    if align is not None:  # the calibrated world (e.g. camera 0) -> the ground-truth world
        s, R, t = align
        est = s * est @ R.T + t
    T = min(len(est), len(gt))
    est, gt = est[:T], gt[:T].astype(np.float64)
    # (P_est, P_gt) mean distance over frames and joints where both exist
    d = np.linalg.norm(est[:, :, None] - gt[:, None], axis=-1)  # (T, Pe, Pg, J)
    with np.errstate(invalid="ignore"):
        cost = np.nanmean(d, axis=(0, 3))
    cost = np.where(np.isfinite(cost), cost, 1e6)
    rows, cols = linear_sum_assignment(cost)
    errs = np.concatenate([d[:, r, c].ravel() for r, c in zip(rows, cols) if cost[r, c] < 1e6] or [np.array([])])
    errs = errs[np.isfinite(errs)]
    found = int(np.sum(np.any(np.isfinite(est[..., 0]), axis=(0, 2))))
    return Pose3dFigures(float(errs.mean() * 1000) if errs.size else float("nan"), found, gt.shape[1], int(errs.size))
