"""Benchmark of ``posecap run-batch``: wall time of a batch with 1 and 2 workers, local and on Ray.

The batch is ``--sessions`` small capture sessions cut from ``calib_data`` (2 cameras, ``--frames``
frames at half resolution, the true rig), each running pose2d (the shipped top-down model, split
into tasks of ``--task-frames`` frames per camera), triangulate and export. Every configuration
runs the same sessions from scratch (``--force all``):

- local, 1 worker: everything in this process, one session after the other;
- local, 2 workers: a pool of 2 processes; two sessions at a time, their tasks in the pool;
- ray, 1 and 2 workers: a Ray started on this machine with that many CPUs (``ray.init`` time is
  reported apart, as a cluster is started once, not per batch).

Ray's overhead per task is measured with empty tasks: the round trip of one task at a time, and
the cost per task when 200 are in flight; the local pool is measured the same way.

    python benchmarks/bench_batch.py               # 4 sessions x 24 frames
    python benchmarks/bench_batch.py --quick       # 3 sessions x 8 frames
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from pipeline.batch import run_batch  # noqa: E402
from pipeline.executors import InlineExecutor  # noqa: E402
from pipeline.executors.local import LocalPoolExecutor  # noqa: E402
from stages import config_sections, load_stages  # noqa: E402
from tests.engine.batch_sessions import write_rig  # noqa: E402
from tests.pose2d.conftest import make_session  # noqa: E402

STAGES = ["pose2d", "triangulate", "export"]


def _noop(x: int) -> int:
    return x


def make_batch(root: Path, sessions: int, frames: int, task_frames: int) -> list[Path]:
    paths = []
    for i in range(sessions):
        session = make_session(root / f"s{i}", frames=frames)
        write_rig(session)
        cfg = {"session_dir": "session",
               "pose2d": {"backend": "topdown", "device": "cpu", "threads": 1, "batch_frames": 4,
                          "chunk_frames": 4, "task_frames": task_frames},
               "triangulate": {"task_frames": 400},
               "export": {"formats": ["json"]}}
        path = root / f"s{i}" / "posecap.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(path)
    return paths


def time_batch(paths: list[Path], executor) -> float:
    stages, sections = load_stages(STAGES), config_sections()
    t0 = time.perf_counter()
    report = run_batch(paths, executor, stages, sections, force=["all"])
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"batch failed: {[o.error for o in report.failed]}")
    return seconds


def task_overhead(executor, n: int = 200) -> tuple[float, float]:
    """(one task at a time, per task with ``n`` in flight) in milliseconds, after a warm-up."""
    executor.map(_noop, list(range(4)))
    t0 = time.perf_counter()
    for i in range(20):
        executor.submit(_noop, i).result()
    serial = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    executor.map(_noop, list(range(n)))
    return serial * 1e3, (time.perf_counter() - t0) / n * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--task-frames", type=int, default=12, help="pose2d frames per task (0 = one task per session)")
    ap.add_argument("--quick", action="store_true", help="3 sessions of 8 frames")
    ap.add_argument("--no-ray", action="store_true", help="local executor only")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.frames, args.task_frames = 3, 8, 4
    try:
        import ray
    except ImportError:
        ray = None
        print("ray not installed (pip install -e '.[ray]'): local rows only")
    work = Path(tempfile.mkdtemp(prefix="posecap-bench-batch-"))
    rows: list[tuple[str, int, float, str]] = []
    overhead: dict[str, tuple[float, float]] = {}
    try:
        paths = make_batch(work, args.sessions, args.frames, args.task_frames)
        time_batch(paths, InlineExecutor())  # warm-up: imports, page cache, model files
        rows.append(("local", 1, time_batch(paths, InlineExecutor()), ""))
        with LocalPoolExecutor(2) as pool:
            t0 = time.perf_counter()
            pool.map(_noop, [0, 1])  # start the workers
            started = time.perf_counter() - t0
            rows.append(("local", 2, time_batch(paths, pool), f"pool start {started:.1f} s apart"))
            overhead["local pool (2)"] = task_overhead(pool)
        if ray is not None and not args.no_ray:
            for workers in (1, 2):
                t0 = time.perf_counter()
                ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
                started = time.perf_counter() - t0
                from pipeline.executors.ray_backend import RayExecutor

                executor = RayExecutor()
                rows.append(("ray", workers, time_batch(paths, executor), f"ray.init {started:.1f} s apart"))
                overhead[f"ray ({workers} CPU)"] = task_overhead(executor)
                ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_tasks = args.sessions * 3 + args.sessions * 2 * max(1, -(-args.frames // max(args.task_frames, 1)))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load} at the end (other jobs count too)")
    print(f"batch: {args.sessions} sessions x 2 cameras x {args.frames} frames; stages {', '.join(STAGES)}; "
          f"about {n_tasks} tasks (stages + pose2d/triangulate chunks)")
    base = {r[0]: r[2] for r in rows if r[1] == 1}
    print(f"{'executor':<9} {'workers':>7} {'wall s':>8} {'vs 1 worker':>12}  note")
    for kind, workers, seconds, note in rows:
        print(f"{kind:<9} {workers:>7} {seconds:>8.2f} {base[kind] / seconds:>11.2f}x  {note}")
    print(f"\n{'task overhead':<16} {'one at a time ms':>17} {'200 in flight ms/task':>22}")
    for name, (serial, flight) in overhead.items():
        print(f"{name:<16} {serial:>17.2f} {flight:>22.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
