"""Benchmark of posecap's triangulation against aniposelib on the same inputs.

A walking COCO-17 person is projected into a synthetic ring rig of 4 and of 16 cameras with 2 px
noise ("clean") and additionally 8 % confident gross outliers (40–250 px) and 10 % misses
("outliers"). On each, in one run:

- aniposelib ``CameraGroup.triangulate`` (DLT) and ``triangulate_ransac``;
- posecap ``pipeline.geometry.triangulate.triangulate`` (weighted DLT) and
  ``pipeline.geometry.robust.robust_triangulate`` (swap correction + consensus rejection).

Reported: points per second (steady state: each method is warmed up on the same shapes first,
so aniposelib's JAX compilation is not counted) and MPJPE in mm, with the share of points each
method returned. aniposelib's RANSAC tries every subset of cameras per point in Python (2^C), so
it runs on a subset of points and, at 16 cameras, in a child process under a time limit.

aniposelib is not a posecap dependency. Install it in a throwaway venv, e.g.::

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install aniposelib numpy scipy pyyaml tqdm opencv-python-headless
    /tmp/benchvenv/bin/python benchmarks/bench_triangulate.py

Without aniposelib only posecap's rows are printed. ``--quick`` uses fewer points. aniposelib 0.8
runs DLT as one JAX batch; 0.5.x (``pip install aniposelib==0.5.1``) loops over points in Python.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.geometry.rig import Rig  # noqa: E402
from pipeline.geometry.robust import RobustOptions, robust_triangulate  # noqa: E402
from pipeline.geometry.triangulate import triangulate  # noqa: E402
from pipeline.skeleton import COCO17  # noqa: E402
from tests.triangulation.synthetic import make_rig, observe, walking_person  # noqa: E402

try:
    import aniposelib.cameras as ani  # noqa: E402
except ImportError:  # pragma: no cover - depends on the environment
    ani = None

INSTALL_HINT = ("aniposelib not installed: python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install "
                "aniposelib numpy scipy pyyaml tqdm opencv-python-headless, then run this script with "
                "/tmp/benchvenv/bin/python")


def best_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (JIT compilation, caches)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def mpjpe(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(MPJPE mm over returned points, share of points returned)."""
    err = np.linalg.norm(est.reshape(-1, 3) - truth.reshape(-1, 3), axis=-1)
    ok = np.isfinite(err)
    return float(err[ok].mean() * 1000) if ok.any() else float("nan"), float(ok.mean())


def anipose_group(rig: Rig):
    import cv2

    cams = [ani.Camera(name=c.name, size=c.image_size, matrix=c.K, dist=c.dist,
                       rvec=cv2.Rodrigues(c.R)[0].ravel(), tvec=c.t) for c in rig.cameras]
    return ani.CameraGroup(cams)


def _ransac_child(rig_yaml: str, uv: np.ndarray, queue) -> None:
    try:
        group = anipose_group(Rig.load(rig_yaml))
        t0 = time.perf_counter()
        out = group.triangulate_ransac(uv)[0]
        queue.put((time.perf_counter() - t0, out))
    except Exception as exc:  # noqa: BLE001 - report aniposelib's failure to the parent
        queue.put((None, f"{type(exc).__name__}: {exc}"))


def anipose_ransac(rig: Rig, uv: np.ndarray, limit_s: float, tmp: Path) -> tuple[float | None, object]:
    """aniposelib's RANSAC in a child process: (seconds, points), (None, error text) or (None, None)."""
    rig_yaml = tmp / f"rig{len(rig)}.yaml"
    rig.save(rig_yaml)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_ransac_child, args=(str(rig_yaml), uv, queue))
    proc.start()
    try:
        seconds, out = queue.get(timeout=limit_s)
    except Exception:  # noqa: BLE001 - queue.Empty on timeout
        proc.kill()
        proc.join()
        return None, None
    proc.join()
    return seconds, out


def _row(n_cams: int, case: str, method: str, seconds: float | None, est: np.ndarray | None, n: int,
         ref: np.ndarray, note: str = "") -> dict:
    err, share = mpjpe(est, ref) if est is not None else (float("nan"), float("nan"))
    return {"cams": n_cams, "case": case, "method": method, "points": n,
            "pts_per_s": n / seconds if seconds else float("nan"), "mpjpe_mm": err, "returned": share,
            "note": note}


def run_case(rig: Rig, group, case: str, kp: np.ndarray, truth: np.ndarray, ransac_points: int,
             ransac_limit_s: float, repeats: int, tmp: Path) -> list[dict]:
    """All methods on one input: kp (C, T, 1, J, 3), truth (T, 1, J, 3)."""
    n_cams = len(rig)
    uv = kp[..., :2].astype(np.float64)
    w = kp[..., 2].astype(np.float64)
    flat_uv = uv.reshape(n_cams, -1, 2)
    flat_truth = truth.reshape(-1, 3)
    N = flat_uv.shape[1]
    opts = RobustOptions()
    rows = []
    t, est = best_time(lambda: triangulate(rig, uv, w), repeats)
    rows.append(_row(n_cams, case, "posecap DLT", t, est, N, flat_truth))
    t, res = best_time(lambda: robust_triangulate(rig, uv, w, opts, flip_pairs=COCO17.flip_pairs), repeats)
    rows.append(_row(n_cams, case, "posecap robust", t, res.points, N, flat_truth))
    if group is None:
        return rows
    t, est = best_time(lambda: group.triangulate(flat_uv), repeats)
    rows.append(_row(n_cams, case, "aniposelib DLT", t, est, N, flat_truth))
    # aniposelib's RANSAC crashes on points no camera sees, so both get points seen twice or more.
    seen = np.flatnonzero(np.isfinite(flat_uv[..., 0]).sum(0) >= 2)
    sub = seen[np.linspace(0, seen.size - 1, min(ransac_points, seen.size)).astype(int)]
    seconds, out = anipose_ransac(rig, np.ascontiguousarray(flat_uv[:, sub]), ransac_limit_s, tmp)
    if seconds is None:
        note = out if isinstance(out, str) else f"did not finish {sub.size} points in {ransac_limit_s:.0f} s"
        out = None
    else:
        note = f"{sub.size} points"
    sub_res = robust_triangulate(rig, flat_uv[:, sub], w.reshape(n_cams, -1)[:, sub], opts)
    note += f"; posecap robust on the same points: {mpjpe(sub_res.points, flat_truth[sub])[0]:.1f} mm"
    rows.append(_row(n_cams, case, "aniposelib RANSAC", seconds, out, sub.size, flat_truth[sub], note))
    return rows


def run(n_frames: int, ransac_points: dict[int, int], ransac_limit_s: float, repeats: int) -> list[dict]:
    import tempfile

    rows = []
    truth = walking_person(n_frames, (0.0, 0.0), 1.2, 0.0)[:, None]  # (T, 1, 17, 3)
    tmp = Path(tempfile.mkdtemp(prefix="bench_tri_"))
    for n_cams in (4, 16):
        rig = make_rig(n_cams, seed=1)
        group = anipose_group(rig) if ani is not None else None
        for case, kw in (("clean", {}), ("outliers", {"outlier_rate": 0.08, "miss_rate": 0.10})):
            kp, _ = observe(rig, truth, noise_px=2.0, seed=7, **kw)
            rows += run_case(rig, group, case, kp, truth, ransac_points[n_cams], ransac_limit_s, repeats, tmp)
            print(f"done: {n_cams} cameras, {case}", file=sys.stderr)
    return rows


def print_table(rows: list[dict]) -> None:
    print("| cams | case | method | points | points/s | MPJPE mm | returned | note |")
    print("|---:|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['cams']} | {r['case']} | {r['method']} | {r['points']} | {r['pts_per_s']:,.0f} | "
              f"{r['mpjpe_mm']:.1f} | {100 * r['returned']:.1f} % | {r['note']} |")
    speed = {(r["cams"], r["case"], r["method"]): r["pts_per_s"] for r in rows}
    for cams in (4, 16):
        for case in ("clean", "outliers"):
            ani_dlt = speed.get((cams, case, "aniposelib DLT"))
            if ani_dlt:
                dlt = speed[(cams, case, "posecap DLT")] / ani_dlt
                robust = speed[(cams, case, "posecap robust")] / ani_dlt
                print(f"{cams} cams, {case}: posecap DLT {dlt:.1f}x, posecap robust {robust:.1f}x "
                      "aniposelib DLT speed")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6000, help="frames of the walking person (17 points each)")
    ap.add_argument("--ransac-limit", type=float, default=120.0,
                    help="seconds allowed to aniposelib's RANSAC")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="600 frames, 1 repeat, short RANSAC limit")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.repeats, args.ransac_limit = 600, 1, 30.0
    if ani is None:
        print(INSTALL_HINT)
    else:
        from importlib.metadata import version

        print(f"aniposelib {version('aniposelib')} (0.8 triangulates in one JAX batch; 0.5 loops over points "
              "in Python -- run this script from a venv with each to compare both)")
    rows = run(args.frames, {4: 2000, 16: 20}, args.ransac_limit, args.repeats)
    print_table(rows)


if __name__ == "__main__":
    main()
