"""The quality report of a rig calibration: ``calib/report.yaml`` (schema ``posecap/rig_report@1``).

Per camera and per camera pair: reprojection error percentiles over the inlier observations,
observation counts; the co-visibility graph with its spanning tree; every view left out and why;
the bundle adjustment's figures; the stereo pairs' figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.calibration.extrinsics import RigCalibration
from pipeline.calibration.rig_init import DROP_REASONS

REPORT_SCHEMA = "rig_report@1"
PERCENTILES = (50, 90, 95, 99)


def error_stats(err: np.ndarray) -> dict[str, Any]:
    """RMS, mean, percentiles and max of pixel errors (M,); empty -> counts only."""
    err = np.asarray(err, np.float64)
    if err.size == 0:
        return {"observations": 0}
    out: dict[str, Any] = {"observations": int(err.size), "rms_px": round(float(np.sqrt(np.mean(err**2))), 5),
                           "mean_px": round(float(err.mean()), 5)}
    for p, v in zip(PERCENTILES, np.percentile(err, PERCENTILES)):
        out[f"p{p}_px"] = round(float(v), 5)
    out["max_px"] = round(float(err.max()), 5)
    return out


def build_report(cal: RigCalibration, recording: str, board: Mapping[str, Any],
                 detected_views: Mapping[str, int], stereo: Mapping[str, Mapping[str, Any]] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report mapping (without ``schema``).

    Args:
        cal: the calibration.
        recording: the recording the board sweep came from.
        board: the board section as YAML values.
        detected_views: camera -> frames in which its detector found the board.
        stereo: pair name -> figures of each stereo pair.
        extra: more top-level fields (seconds, params).
    """
    cams = list(cal.rig.names)
    err = np.linalg.norm(cal.residuals_px, axis=1)
    inl = cal.inlier
    used_views = {c: set(cal.obs_frame[inl & (cal.obs_cam == i)].tolist()) for i, c in enumerate(cams)}
    cameras: dict[str, Any] = {}
    for i, cam in enumerate(cams):
        mine = cal.obs_cam == i
        entry = {
            "views_detected": int(detected_views.get(cam, 0)),
            "views_used": len(used_views[cam]),
            "outlier_observations": int((mine & ~inl).sum()),
            **error_stats(err[mine & inl]),
        }
        if cam in cal.freed:
            entry["intrinsics_refined"] = list(cal.freed[cam])
        cameras[cam] = entry
    pairs: dict[str, Any] = {}
    for a in range(len(cams)):
        for b in range(a + 1, len(cams)):
            shared = sorted(used_views[cams[a]] & used_views[cams[b]])
            if not shared:
                continue
            in_shared = np.isin(cal.obs_frame, shared) & ((cal.obs_cam == a) | (cal.obs_cam == b)) & inl
            pairs[f"{cams[a]}-{cams[b]}"] = {"frames": len(shared), **error_stats(err[in_shared])}
    reasons = Counter(d["reason"] for d in cal.dropped)
    ba = cal.ba
    report: dict[str, Any] = {
        "recording": recording,
        "world": cal.rig.world,
        "board": dict(board),
        "overall": {"initial_rms_px": round(cal.initial_rms_px, 5), **error_stats(err[inl])},
        "cameras": cameras,
        "pairs": pairs,
        "covisibility": cal.graph.as_yaml(),
        "dropped_views": {
            "counts": {r: int(reasons.get(r, 0)) for r in DROP_REASONS},
            "outlier_observations": int((~inl).sum()),
            "views": sorted(cal.dropped, key=lambda d: (d["camera"], d["frame"])),
        },
        "bundle_adjustment": {
            "observations": int(err.size),
            "board_poses": int(cal.board_frames.size),
            "rounds": cal.rounds,
            "cost_initial": float(ba.cost_initial),
            "cost_final": float(ba.cost_final),
            "function_evaluations": ba.nfev,
            "status": ba.status,
            "message": ba.message,
            "converged": bool(ba.converged),
            "kept_initial": bool(ba.kept_initial),
        },
        "warnings": list(cal.warnings),
    }
    if stereo:
        report["stereo"] = {k: dict(v) for k, v in stereo.items()}
    report.update(extra or {})
    return report


def rig_baseline_mm(cal: RigCalibration, pair: Sequence[str]) -> float:
    """Distance between two cameras' centres in the calibrated rig, millimetres."""
    a, b = cal.rig.camera(pair[0]), cal.rig.camera(pair[1])
    return float(np.linalg.norm(a.center_world - b.center_world) * 1000.0)
