"""Benchmark of resource bounds: peak memory of crop, pose2d and triangulate on long capture takes.

Issue #15 item 4: crop, pose2d and triangulate stream a long take (10 000+ frames) with bounded
memory, so each stage's peak RSS should stay flat as the take grows. This benchmark:

1. renders a short synthetic session once (``posecap synth``: 2x2 quad of small tiles, two
   people, a two-frame intrinsics sweep so crop has a calibration recording to write);
2. for every length in ``--frames``, loops the rendered capture forwards and backwards
   (ping-pong, so motion stays continuous and tracks do not jump at the seams) into a long MJPG
   mosaic, writes a session config and copies the synth ground-truth rig to ``calib/rig.yaml``
   (the calibration stages are not measured);
3. runs ``python -m pipeline.cli run CONFIG --only STAGE --force STAGE`` for crop, pose2d and
   triangulate, each in a fresh child process, and reads that child's peak RSS from
   ``os.wait4`` (``ru_maxrss`` of that child alone, whatever ran before it).

pose2d uses the cheapest built-in setting (``bottomup`` at a reduced network input, one torch
thread, CPU), so 10 000 frames x 4 cameras finish in a few minutes on two cores. Frame content
repeats, so the number of people per frame does not grow with the length; only the frame count
does. The table shows peak RSS and wall time per stage and length, then the ratio of the longest
to the shortest length (flat memory ~ 1.0).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_memory.py [--frames 1000 10000] [--keep DIR]``
(``--quick``: 100 and 400 frames, a smoke test). ``--keypoints truth`` feeds triangulate the
ground-truth people instead of the fast detector's output (which finds 6-8 "people" per camera
at 128x96 and so hundreds of short tracks): triangulate's output is (frames x tracks), so its
file grows with the take times the number of tracks, and the truth run isolates the take length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("crop", "pose2d", "triangulate")
CAMERAS = ["cam0", "cam1", "cam2", "cam3"]


def render_short(out: Path, frames: int, tile: tuple[int, int], people: int) -> None:
    """Render the short synthetic session the long takes are looped from (``posecap synth``)."""
    cmd = [sys.executable, "-m", "pipeline.synth", str(out), "--frames", str(frames), "--tile-size", str(tile[0]),
           str(tile[1]), "--people", str(people), "--intrinsics-frames", "2", "--extrinsics-frames", "2",
           "--no-progress"]
    subprocess.run(cmd, check=True, cwd=ROOT, env=_env())


def write_long_take(src: Path, dest: Path, frames: int) -> None:
    """Loop ``src`` ping-pong (0..n-1, n-2..1, ...) into ``frames`` frames of MJPG."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    clip = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        clip.append(img)
    cap.release()
    if len(clip) < 2:
        raise RuntimeError(f"{src}: fewer than 2 frames decoded")
    seq = clip + clip[-2:0:-1]
    h, w = clip[0].shape[:2]
    writer = cv2.VideoWriter(str(dest), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for n in range(frames):
        writer.write(seq[n % len(seq)])
    writer.release()


def write_session(root: Path, take: Path, synth: Path, pose2d: dict) -> Path:
    """Config + calib/rig.yaml for one long take; returns the config path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "session" / "calib").mkdir(parents=True, exist_ok=True)
    shutil.copy(synth / "ground_truth" / "rig.yaml", root / "session" / "calib" / "rig.yaml")
    cfg = {
        "session_dir": "session",
        "crop": {"recordings": {
            "intrinsics": {"kind": "intrinsics", "sources": [
                {"path": str(synth / "raw" / "intrinsics" / "quad.mp4"), "grid": [2, 2], "cameras": CAMERAS}]},
            "capture": {"kind": "capture", "sources": [
                {"path": str(take), "grid": [2, 2], "cameras": CAMERAS}]}}},
        "pose2d": pose2d,
    }
    path = root / "posecap.yaml"
    path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
    return path


def write_truth_keypoints(session: Path, synth: Path, frames: int, noise_px: float = 2.0, seed: int = 0) -> None:
    """``pose2d/<cam>.npz`` from the synth ground truth, looped ping-pong like the take, with pixel noise.

    For ``--keypoints truth``: triangulate then sees exactly the rendered people (not a fast
    detector's false ones), so its track count is the scene's and memory shows its scaling in
    frames alone.
    """
    import numpy as np

    from pipeline.pose2d.io import write_pose2d

    gt = np.load(synth / "ground_truth" / "people.npz")
    n = gt["joints"].shape[0]
    order = np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)])[np.arange(frames) % (2 * n - 2)]
    rng = np.random.default_rng(seed)
    (session / "pose2d").mkdir(parents=True, exist_ok=True)
    for cam in CAMERAS:
        uv = gt[f"uv_{cam}"][order].astype(np.float32)  # (T, P, J, 2)
        vis = gt[f"visible_{cam}"][order]
        uv += rng.normal(0.0, noise_px, uv.shape).astype(np.float32)
        kp = np.concatenate([uv, np.full(uv.shape[:-1] + (1,), 0.9, np.float32)], axis=-1)
        kp[~vis] = np.nan
        write_pose2d(session / "pose2d" / f"{cam}.npz", kp, np.arange(frames))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def prerequisites(stages: list[str], keypoints: str) -> list[str]:
    """The stages before the first measured one whose outputs it reads (run first, not measured).

    crop makes pose2d's streams, pose2d makes triangulate's keypoints; with ``--keypoints truth``
    triangulate reads the ground truth and the rig only.
    """
    first = min(STAGES.index(s) for s in stages)
    if keypoints == "truth" and STAGES[first] == "triangulate":
        return []
    return list(STAGES[:first])


def run_stage(config: Path, stage: str, max_gib: float) -> tuple[float, float, bool]:
    """Run one stage in a fresh child process; return (peak RSS MiB of that child, wall seconds, succeeded).

    The child's address space is capped at ``max_gib`` (RLIMIT_AS), so a stage whose memory grows
    with the take fails with a MemoryError instead of driving the machine out of memory.
    """
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "run", str(config), "--only", stage, "--force", stage]
    limit = int(max_gib * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=config.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=cap if max_gib > 0 else None)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child only (Linux: ru_maxrss in KiB)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout:
        proc.stdout.close()
    if proc.returncode:
        text = out.decode(errors="replace")
        if "MemoryError" not in text and "Unable to allocate" not in text:
            sys.stdout.write(text[-4000:])
            raise RuntimeError(f"{stage} on {config} exited {proc.returncode}")
        print(f"  {stage}: out of memory under the {max_gib:g} GiB address-space cap: "
              f"{text.strip().splitlines()[-1][:200]}")
        return usage.ru_maxrss / 1024, wall, False
    return usage.ru_maxrss / 1024, wall, True


def _facts(session: Path, stage: str) -> str:
    """A few output figures that explain the memory (people per camera, tracks)."""
    import yaml

    if stage == "pose2d":
        meta = yaml.safe_load((session / "pose2d" / "pose2d.yaml").read_text())
        return "max people/cam " + ",".join(str(c["max_people"]) for c in meta["cameras"].values())
    if stage == "triangulate":
        meta = yaml.safe_load((session / "pose3d" / "pose3d.yaml").read_text())
        return f"{len(meta['people'])} tracks"
    n = sum(f.stat().st_size for f in (session / "streams").iterdir())
    return f"streams {n / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[1000, 10000], help="take lengths, frames")
    ap.add_argument("--synth-frames", type=int, default=120, help="frames rendered by posecap synth (looped)")
    ap.add_argument("--tile", type=int, nargs=2, default=[256, 192], metavar=("W", "H"), help="camera image size")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--input-size", type=int, nargs=2, default=[128, 96], metavar=("W", "H"),
                    help="pose2d bottomup_input_size (multiples of 16)")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--max-gib", type=float, default=10.0,
                    help="address-space cap of each stage process, GiB (0 = none); a stage over it is reported as OOM")
    ap.add_argument("--keep", default="", help="work in this folder and keep it (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="100 and 400 frames (smoke test)")
    ap.add_argument("--keypoints", choices=["pose2d", "truth"], default="pose2d",
                    help="triangulate's input: the pose2d stage's output, or the synth ground truth with 2 px "
                         "noise (the scene's true people; pose2d is then not run)")
    args = ap.parse_args()
    if args.keypoints == "truth":
        args.stages = [st for st in args.stages if st != "pose2d"]
    if args.quick:
        args.frames = [100, 400]
    pose2d = {"backend": "bottomup", "device": "cpu", "threads": 1, "bottomup_input_size": args.input_size,
              "min_person_score": 0.4}
    tmp = None
    if args.keep:
        work = Path(args.keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_memory_")
        work = Path(tmp.name)
    try:
        synth = work / "synth"
        if not (synth / "ground_truth" / "rig.yaml").is_file():
            render_short(synth, args.synth_frames, tuple(args.tile), args.people)
        rows: dict[tuple[str, int], tuple[float, float, str]] = {}
        for n in args.frames:
            take = work / f"take_{n}.avi"
            write_long_take(synth / "raw" / "capture" / "quad.mp4", take, n)
            config = write_session(work / f"session_{n}", take, synth, pose2d)
            for stage in prerequisites(args.stages, args.keypoints):  # their inputs, not measured
                run_stage(config, stage, 0)
            for stage in args.stages:
                if stage == "triangulate" and args.keypoints == "truth":
                    write_truth_keypoints(config.parent / "session", synth, n)
                rss, wall, ok = run_stage(config, stage, args.max_gib)
                facts = _facts(config.parent / "session", stage) if ok else f"OOM at the {args.max_gib:g} GiB cap"
                rows[stage, n] = (rss, wall, facts)
                print(f"  {stage:<12} {n:6d} frames  {rss:7.1f} MiB  {wall:7.1f} s  {rows[stage, n][2]}",
                      flush=True)
            take.unlink()
        print(f"\npeak RSS of a fresh `posecap run --only STAGE` process; 2x2 quad of {args.tile[0]}x{args.tile[1]} "
              f"tiles, {args.people} people, pose2d bottomup {args.input_size[0]}x{args.input_size[1]} on 1 thread; "
              f"OMP_NUM_THREADS={_env()['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs\n")
        print("| stage | frames | peak RSS MiB | wall s | output |")
        print("|---|---:|---:|---:|---|")
        for (stage, n), (rss, wall, facts) in rows.items():
            print(f"| {stage} | {n} | {rss:.1f} | {wall:.1f} | {facts} |")
        lo, hi = min(args.frames), max(args.frames)
        if lo != hi:
            print(f"\n| stage | peak RSS {hi} / {lo} frames | growth MiB | wall {hi} / {lo} |")
            print("|---|---:|---:|---:|")
            for stage in args.stages:
                a, b = rows[stage, lo], rows[stage, hi]
                print(f"| {stage} | {b[0] / a[0]:.2f} | {b[0] - a[0]:+.1f} | {b[1] / a[1]:.1f} |")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
