"""2D keypoints against synthetic ground truth: median joint error and person recall per camera.

Ground truth is ``ground_truth/people.npz`` of a ``posecap synth`` output: ``uv_<cam>`` (T, P, 17, 2)
distorted pixels and ``visible_<cam>`` (T, P, 17) bool. Per camera and frame, the detections are
matched one-to-one to the true persons by OKS (Hungarian, COCO sigmas, scale from the box of the
visible joints, as :func:`pipeline.training.evaluate.oks`); a pair with OKS >= ``oks_threshold`` is
a match. A true person counts when at least ``min_visible`` joints are visible.

- ``recall``: matched counted persons / counted persons;
- ``precision``: matches / detections;
- ``median_px`` / ``mean_px``: error of the visible joints of matched persons that the detection
  has (a visible joint the detection misses is counted in ``joints_missed``), image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.artifacts import read_npz
from pipeline.pose2d.io import read_pose2d
from pipeline.training.evaluate import oks

__all__ = ["Pose2dFigures", "pose2d_figures", "score_camera"]


@dataclass(frozen=True)
class Pose2dFigures:
    """Figures over all cameras, and recall / median error per camera."""

    median_px: float
    mean_px: float
    recall: float
    precision: float
    persons: int
    joints: int
    joints_missed: int
    per_camera: dict[str, dict[str, float]]


def score_camera(pred: np.ndarray, uv: np.ndarray, visible: np.ndarray, oks_threshold: float = 0.5,
                 min_visible: int = 3) -> dict[str, object]:
    """Match one camera's detections (T, P', 17, 3) to the truth uv (T, P, 17, 2), visible (T, P, 17)."""
    errors: list[float] = []
    matched = counted = detections = missed = 0
    for t in range(min(len(pred), len(uv))):
        det = pred[t][np.isfinite(pred[t][..., :2]).any(-1).any(-1)]
        detections += len(det)
        counts = visible[t].sum(-1) >= min_visible
        counted += int(counts.sum())
        if not len(det) or not counts.any():
            continue
        sim = np.zeros((len(det), len(uv[t])))
        for g in range(len(uv[t])):
            if not counts[g]:
                continue
            box = uv[t, g][visible[t, g]]
            area = max(float(np.ptp(box[:, 0]) * np.ptp(box[:, 1])) * 0.53, 1.0)
            for i in range(len(det)):
                sim[i, g] = oks(det[i, :, :2], uv[t, g], visible[t, g], area)
        for i, g in zip(*linear_sum_assignment(-sim)):
            if sim[i, g] >= oks_threshold and counts[g]:
                matched += 1
                d = np.linalg.norm(det[i, :, :2] - uv[t, g], axis=-1)[visible[t, g]]
                missed += int((~np.isfinite(d)).sum())
                errors.extend(d[np.isfinite(d)].tolist())
    return {"errors": errors, "matched": matched, "counted": counted, "detections": detections, "missed": missed}


def pose2d_figures(pose2d_dir: Path, truth_dir: Path, cameras: list[str] | None = None,
                   oks_threshold: float = 0.5) -> Pose2dFigures | None:
    """Figures of ``pose2d_dir/<cam>.npz`` against ``truth_dir/people.npz``; None if either is missing."""
    truth_file = Path(truth_dir) / "people.npz"
    if not truth_file.is_file() or not Path(pose2d_dir).is_dir():
        return None
    truth = read_npz(truth_file)
    names = cameras or sorted(k[3:] for k in truth if k.startswith("uv_"))
    errors: list[float] = []
    matched = counted = detections = missed = 0
    per_camera = {}
    for cam in names:
        path = Path(pose2d_dir) / f"{cam}.npz"
        if not path.is_file():
            continue
        pred, _ = read_pose2d(path, 17)
        s = score_camera(pred, truth[f"uv_{cam}"], truth[f"visible_{cam}"].astype(bool), oks_threshold)
        errors += s["errors"]
        matched += s["matched"]
        counted += s["counted"]
        detections += s["detections"]
        missed += s["missed"]
        per_camera[cam] = {"recall": s["matched"] / max(s["counted"], 1),
                           "median_px": float(np.median(s["errors"])) if s["errors"] else float("nan")}
    if not per_camera:
        return None
    return Pose2dFigures(
        median_px=float(np.median(errors)) if errors else float("nan"),
        mean_px=float(np.mean(errors)) if errors else float("nan"),
        recall=matched / max(counted, 1), precision=matched / max(detections, 1), persons=counted,
        joints=len(errors), joints_missed=missed, per_camera=per_camera)


def crop_capture(synth_dir: Path, session_dir: Path, show_progress: bool = False) -> Path:
    """Run the crop stage on the capture recording only of a ``posecap synth`` output (e.g. calib_data).

    Returns the session folder holding ``session.yaml`` and ``streams/``.
    """
    import dataclasses

    from pipeline.artifacts import load_yaml_file
    from pipeline.config import from_mapping
    from pipeline.stage import StageContext
    from stages.crop import STAGE as CROP
    from stages.crop import CropParams

    config_file = Path(synth_dir) / "posecap.yaml"
    crop = from_mapping(CropParams, load_yaml_file(config_file)["crop"], str(config_file), prefix="crop.")
    capture = {n: r for n, r in crop.recordings.items() if r.kind == "capture"}
    cams = {c for r in capture.values() for s in r.sources for c in s.cameras}
    pairs = [p for p in crop.stereo_pairs if set(p) <= cams]
    params = dataclasses.replace(crop, recordings=capture, stereo_pairs=pairs)
    session_dir = Path(session_dir)
    session_dir.mkdir(parents=True, exist_ok=True)
    CROP.run(StageContext(session_dir, params, None, config_file.parent, show_progress=show_progress))
    return session_dir
