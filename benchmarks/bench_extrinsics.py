"""Benchmark of posecap's rig calibration against aniposelib on the same board detections.

Datasets (every one fed identically to both; both get the same, true intrinsics):

- ``ring6``: six cameras on a ring plus a stereo pair, 120 frames of a 9x6 checkerboard (6 cm
  squares) projected with 0.3 px noise; each frame the board faces two neighbouring cameras.
- ``ring12-outliers``: twelve cameras, 150 frames, 0.3 px noise plus 1 % of corners moved by
  5-15 px (a detector's wrong corner).
- ``calib_data``: the rendered sample's extrinsic sweep (``calib_data/``), cropped with the crop
  stage and detected with posecap's sweep detector (skipped when the sample is missing).

Each calibration starts from the detections (per-view PnP, initial poses, bundle adjustment,
outlier handling); its wall time is the best of ``--repeats`` runs in this one process run.
Errors are against the truth after a similarity alignment of the camera centres: centre error
(mm) and rotation error (degrees), mean and max over the cameras.

aniposelib (``CameraGroup.calibrate_rows`` with ``init_intrinsics=False``; its bundle adjustment
refines one focal length and k1 per camera, as in anipose) is not a posecap dependency and needs
opencv-contrib, so it runs in its own interpreter::

    python3 -m venv /tmp/anivenv && /tmp/anivenv/bin/pip install aniposelib
    .venv/bin/python benchmarks/bench_extrinsics.py --aniposelib-python /tmp/anivenv/bin/python

(or in this interpreter when it can import aniposelib). aniposelib samples points with
``np.random``; the worker seeds it, so runs repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ---- aniposelib worker (runs under the aniposelib interpreter; imports nothing from posecap) ----------

def aniposelib_calibrate(data: dict, only_extrinsics: bool, repeats: int) -> dict:
    """Calibrate with aniposelib; ``data`` holds corners (C, F, N, 2), K, dist, sizes, names, board."""
    from aniposelib.boards import Checkerboard
    from aniposelib.cameras import Camera, CameraGroup

    cols, rows = (int(v) for v in data["board"][:2])
    square = float(data["board"][2])
    corners = data["corners"]
    best, out = np.inf, None
    for _ in range(repeats):
        np.random.seed(0)
        cams = [Camera(matrix=data["K"][c], dist=data["dist"][c], size=tuple(int(v) for v in data["sizes"][c]),
                       name=str(data["names"][c])) for c in range(corners.shape[0])]
        group = CameraGroup(cams)
        board = Checkerboard(cols, rows, square_length=square)
        all_rows = []
        for c in range(corners.shape[0]):
            rows_c = []
            for f in range(corners.shape[1]):
                uv = corners[c, f]
                if np.isfinite(uv).all():
                    rows_c.append({"framenum": f, "corners": uv.reshape(-1, 1, 2).astype(np.float32),
                                   "ids": np.arange(uv.shape[0])})
            all_rows.append(board.fill_points_rows(rows_c))  # as board.detect_video does
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            error = group.calibrate_rows(all_rows, board, init_intrinsics=False, init_extrinsics=True, verbose=False,
                                         only_extrinsics=only_extrinsics)
        seconds = time.perf_counter() - t0
        if seconds < best:
            import cv2

            best = seconds
            out = {"R": np.stack([cv2.Rodrigues(np.asarray(c.get_rotation(), float))[0] for c in group.cameras]),
                   "t": np.stack([np.asarray(c.get_translation(), float).ravel() for c in group.cameras]),
                   "error": float(error)}
    out["seconds"] = best
    return out


def worker_main(argv: list[str]) -> int:
    src, dst, only, repeats = argv[0], argv[1], argv[2] == "1", int(argv[3])
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    res = aniposelib_calibrate(data, only, repeats)
    np.savez(dst, R=res["R"], t=res["t"], seconds=res["seconds"], error=res["error"])
    return 0


# ---- the benchmark (posecap's interpreter) -------------------------------------------------------------

def run_aniposelib(python: str | None, data: dict, only_extrinsics: bool, repeats: int) -> dict:
    """aniposelib in this process when importable, else in ``python`` (a child process)."""
    if python is None:
        return aniposelib_calibrate(data, only_extrinsics, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **data)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # one BLAS thread, as posecap's bundle adjustment uses: with more, OpenBLAS's spin-waits slow
        # scipy's LSMR several-fold on a busy machine, which would be unfair to aniposelib
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run([python, __file__, "--worker", str(src), str(dst), "1" if only_extrinsics else "0",
                               str(repeats)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"aniposelib worker failed:\n{proc.stderr[-3000:]}")
        with np.load(dst) as z:
            return {k: z[k] for k in z.files}


def errors(R: np.ndarray, t: np.ndarray, truth) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.geometry.camera import Camera
    from pipeline.geometry.rig import Rig
    from tests.calibration.extrinsics_synthetic import rig_errors

    est = Rig(tuple(Camera(c.name, c.image_size, c.K, c.dist, R[i], t[i]) for i, c in enumerate(truth.cameras)))
    e = rig_errors(est, truth)
    return e["centre_mm"], e["rotation_deg"]


def synthetic(name: str):
    from tests.calibration.extrinsics_synthetic import ring_rig, sweep

    if name == "ring6":
        rig = ring_rig(6, stereo=True, seed=11)
        sw = sweep(rig, 120, noise_px=0.3, seed=12)
        return rig, sw.obs, sw.board
    rig = ring_rig(12, seed=13)
    sw = sweep(rig, 150, noise_px=0.3, seed=14, group=3)
    rng = np.random.default_rng(15)
    corners = sw.obs.corners.copy()
    idx = np.argwhere(np.isfinite(corners).all(axis=-1))
    bad = idx[rng.choice(len(idx), len(idx) // 100, replace=False)]
    kick = rng.uniform(5, 15, len(bad))[:, None] * np.stack([np.cos(a := rng.uniform(0, 2 * np.pi, len(bad))),
                                                             np.sin(a)], axis=1)
    corners[bad[:, 0], bad[:, 1], bad[:, 2]] += kick
    from pipeline.calibration.covisibility import Observations

    return rig, Observations(sw.obs.cameras, sw.obs.frames, corners, sw.obs.image_sizes), sw.board


def calib_data(path: Path, workers: int):
    """Detections of calib_data's extrinsic sweep (crop stage + sweep detector) and the true rig."""
    from pipeline.artifacts import read_yaml
    from pipeline.calibration.board import BoardConfig
    from pipeline.calibration.covisibility import synchronise
    from pipeline.calibration.extrinsic_detect import detect_sweep
    from pipeline.config import Config, from_mapping
    from pipeline.geometry.rig import Rig
    from pipeline.stage import StageContext
    from stages.crop import STAGE as CROP
    from stages.crop import CropParams

    files = read_yaml(path / "ground_truth" / "mosaics.yaml", "synth_mosaics@1")["files"]
    opts = read_yaml(path / "ground_truth" / "options.yaml", "synth_options@1")
    board = BoardConfig(type=opts["board"], inner_corners=tuple(opts["inner_corners"]),
                        square_size_m=opts["square_size_m"])
    sources = [{"path": str((path / raw).resolve()), "grid": list(m["grid"]), "cameras": list(m["cameras"])}
               for raw, m in files.items() if m["recording"] == "extrinsics"]
    crop = from_mapping(CropParams, {"recordings": {"extrinsics": {"kind": "extrinsics", "sources": sources}}},
                        "<bench>", "crop.")
    truth = Rig.load(path / "ground_truth" / "rig.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp)
        CROP.run(StageContext(session, crop, Config({"crop": crop}, session), session, show_progress=False))
        per = {}
        for cam in truth.names:
            det = detect_sweep(session / "calib" / "streams" / "extrinsics" / f"{cam}.mkv", board, workers=workers,
                               progress=False)
            per[cam] = (det.frame_index, det.corners)
    obs = synchronise(per, {c: (30.0, 0.0) for c in truth.names}, {c.name: c.image_size for c in truth.cameras},
                      board.n_corners)
    return truth, obs, board


def posecap_calibrate(obs, truth, board, repeats: int) -> dict:
    from pipeline.calibration.board import object_points
    from pipeline.calibration.extrinsics import Intrinsics, RigOptions, calibrate_rig

    intr = [Intrinsics(c.name, c.image_size, c.K, c.dist) for c in truth.cameras]
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        cal = calibrate_rig(obs, intr, object_points(board).astype(np.float64), RigOptions())
        seconds = time.perf_counter() - t0
        if seconds < best:
            best, out = seconds, cal
    return {"R": out.rig.R, "t": out.rig.t, "seconds": best, "rms": max(out.rms_px.values())}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker_main(sys.argv[2:])
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aniposelib-python", default=os.environ.get("ANIPOSELIB_PYTHON"),
                    help="interpreter with aniposelib installed (default: this one, if it has aniposelib)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method; the best time is reported")
    ap.add_argument("--datasets", nargs="*", default=["ring6", "ring12-outliers", "calib_data"])
    ap.add_argument("--calib-data", default=str(ROOT / "calib_data"), help="the rendered sample folder")
    ap.add_argument("--workers", type=int, default=2, help="detection processes for calib_data")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    python = args.aniposelib_python
    if python is None:
        try:
            import aniposelib  # noqa: F401
        except ImportError:
            print("aniposelib not found: python3 -m venv /tmp/anivenv && /tmp/anivenv/bin/pip install aniposelib; "
                  "then pass --aniposelib-python /tmp/anivenv/bin/python", file=sys.stderr)
            return 2

    rows, table = [], []
    for name in args.datasets:
        if name == "calib_data":
            if not (Path(args.calib_data) / "raw" / "extrinsics").is_dir():
                print(f"skip calib_data: {args.calib_data} has no raw/extrinsics", file=sys.stderr)
                continue
            truth, obs, board = calib_data(Path(args.calib_data), args.workers)
        else:
            truth, obs, board = synthetic(name)
        views = int(np.isfinite(obs.corners).all(axis=(2, 3)).sum())
        data = {"corners": obs.corners, "K": truth.K, "dist": np.stack([np.pad(c.dist, (0, 5 - c.dist.size))[:5]
                                                                         for c in truth.cameras]),
                "sizes": np.array([c.image_size for c in truth.cameras]), "names": np.array(truth.names),
                "board": np.array([board.cols, board.rows, board.square_size_m])}
        results = {"posecap": posecap_calibrate(obs, truth, board, args.repeats)}
        results["aniposelib"] = run_aniposelib(python, data, False, args.repeats)
        results["aniposelib (only_extrinsics)"] = run_aniposelib(python, data, True, args.repeats)
        for method, res in results.items():
            c, r = errors(res["R"], res["t"], truth)
            row = {"dataset": name, "cameras": len(truth), "views": views, "method": method,
                   "centre_mm_mean": float(c.mean()), "centre_mm_max": float(c.max()),
                   "rotation_deg_mean": float(r.mean()), "rotation_deg_max": float(r.max()),
                   "seconds": float(res["seconds"])}
            rows.append(row)
        base = next(r for r in rows if r["dataset"] == name and r["method"] == "posecap")
        for row in rows:
            if row["dataset"] == name:
                row["speedup_vs_posecap"] = row["seconds"] / base["seconds"]
    head = (f"{'dataset':16} {'cams':>4} {'views':>5} {'method':28} {'centre mm mean/max':>19} "
            f"{'rot deg mean/max':>17} {'time s':>8} {'x posecap':>9}")
    table.append(head)
    table.append("-" * len(head))
    for r in rows:
        table.append(f"{r['dataset']:16} {r['cameras']:>4} {r['views']:>5} {r['method']:28} "
                     f"{r['centre_mm_mean']:8.2f} / {r['centre_mm_max']:7.2f} {r['rotation_deg_mean']:7.3f} / "
                     f"{r['rotation_deg_max']:6.3f} {r['seconds']:8.2f} {r['speedup_vs_posecap']:9.1f}")
    print("\n".join(table))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
