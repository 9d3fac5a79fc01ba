"""Benchmark of the crop stage.

1. Throughput: frames per second of ``crop`` (the whole stage: tile detection, decode, four
   encodes, session.yaml) against a plain ``cv2.VideoCapture`` -> slice -> ``cv2.VideoWriter``
   loop over the same 2x2 mosaic with the same output codec (FFV1: the plain loop cannot write
   png streams), side by side in one run, runs interleaved; and crop with its default codec
   (auto: FFV1 for these even-sized tiles) and with png, for reference.
2. Memory: peak RSS of a child process cropping synthetic mosaics of growing length (thousands
   of small frames); bounded streaming means the peak stays flat as the length grows.

Run: ``.venv/bin/python benchmarks/bench_crop.py [--frames 300] [--tile 640x360] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tile(cam: int, n: int, w: int, h: int, base: np.ndarray) -> np.ndarray:
    img = np.roll(base, shift=(n * 3 + cam * 17) % w, axis=1).copy()
    cv2.circle(img, ((n * 9 + cam * 40) % w, h // 2), h // 6, (30, 220, 60), -1)
    cv2.putText(img, f"cam{cam} {n}", (10, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return img


def write_mosaic(path: Path, frames: int, tile_w: int, tile_h: int, codec: str, border: int = 8,
                 sep: int = 4) -> list[tuple[int, int, int, int]]:
    """Write a 2x2 mosaic with a dark border, separators and a timestamp; return the tile rects."""
    W, H = 2 * tile_w + sep + 2 * border, 2 * tile_h + sep + 2 * border
    rects = [(border + c * (tile_w + sep), border + r * (tile_h + sep), tile_w, tile_h)
             for r in range(2) for c in range(2)]
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (tile_h, tile_w, 3), dtype=np.uint8), (0, 0), 3)
    base = cv2.normalize(noise, None, 70, 230, cv2.NORM_MINMAX)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), 30.0, (W, H))
    for n in range(frames):
        img = np.zeros((H, W, 3), np.uint8)
        for i, (x, y, w, h) in enumerate(rects):
            img[y:y + h, x:x + w] = _tile(i, n, w, h, base)
        cv2.putText(img, f"2024-05-01 12:00:{n % 60:02d}", (2, border + 14), cv2.FONT_HERSHEY_PLAIN, 1.0,
                    (255, 255, 255), 1)
        writer.write(img)
    writer.release()
    return rects


def plain_loop(src: Path, out_dir: Path, rects: list[tuple[int, int, int, int]], codec: str, ext: str) -> int:
    """The baseline: one VideoCapture, slice each frame, one VideoWriter per tile."""
    cap = cv2.VideoCapture(str(src), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fourcc = cv2.VideoWriter_fourcc(*codec)
    writers = [cv2.VideoWriter(str(out_dir / f"cam{i}.{ext}"), cv2.CAP_FFMPEG, fourcc, fps, (w, h))
               for i, (_, _, w, h) in enumerate(rects)]
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        for wr, (x, y, w, h) in zip(writers, rects):
            wr.write(frame[y:y + h, x:x + w])
        n += 1
    for wr in writers:
        wr.release()
    cap.release()
    return n


def run_crop(session: Path, config: Path, show_progress: bool = False) -> None:
    """Run the crop stage as the CLI would, without the engine's lock bookkeeping."""
    from pipeline.config import load_config
    from pipeline.stage import StageContext
    from stages.crop import STAGE, CropParams

    cfg = load_config(config, {"crop": CropParams}, session_dir=session)
    ctx = StageContext(session_dir=session, params=cfg["crop"], config=cfg, config_dir=cfg.config_dir,
                       show_progress=show_progress)
    STAGE.run(ctx)


def write_config(path: Path, src: Path, codec: str, ext: str) -> None:
    path.write_text(json.dumps({
        "crop": {"codec": codec, "extension": ext, "recordings": {"capture": {"kind": "capture", "sources": [
            {"path": str(src), "grid": [2, 2], "cameras": ["cam0", "cam1", "cam2", "cam3"]}]}}}}))


def throughput(work: Path, frames: int, tile: tuple[int, int], src_codec: str, codec: str, ext: str,
               repeats: int) -> None:
    """Plain loop and crop with the same output codec, plus crop with codec auto and png."""
    src = work / f"mosaic_{src_codec}.avi"
    rects = write_mosaic(src, frames, tile[0], tile[1], src_codec)
    configs = {}
    for name, (c, e) in {f"crop {codec}": (codec, ext), "crop auto (default)": ("auto", "mkv"),
                         "crop png": ("png", "mkv")}.items():
        configs[name] = work / f"posecap_{c}.yaml"
        write_config(configs[name], src, c, e)
    import stages.crop  # noqa: F401 - keep imports out of the timings

    best = {name: float("inf") for name in [f"plain loop {codec}", *configs]}
    cpu = dict.fromkeys(best, float("inf"))

    def timed(name: str, fn) -> None:  # noqa: ANN001
        t, c = time.perf_counter(), time.process_time()
        fn()
        best[name] = min(best[name], time.perf_counter() - t)
        cpu[name] = min(cpu[name], time.process_time() - c)  # all threads of this process

    warm = work / "warm-up"
    warm.mkdir()
    n = plain_loop(src, warm, rects, codec, ext)  # untimed: brings the source into the page cache
    for r in range(repeats):  # interleaved, so a change in machine load hits every variant alike
        plain_dir = work / f"plain{r}"
        plain_dir.mkdir()
        timed(f"plain loop {codec}", lambda d=plain_dir: plain_loop(src, d, rects, codec, ext))
        for name, cfg in configs.items():
            timed(name, lambda cfg=cfg, r=r: run_crop(work / f"session_{cfg.stem}_{r}", cfg))
    W, H = 2 * tile[0] + 20, 2 * tile[1] + 20
    print(f"throughput  mosaic {W}x{H} {src_codec}, {n} frames -> 4 streams of {tile[0]}x{tile[1]}; "
          f"best of {repeats}, {os.cpu_count()} CPUs")
    base = best[f"plain loop {codec}"]
    for name, secs in best.items():
        print(f"  {name:<22} {n / secs:7.1f} fps  ({secs:6.2f} s wall, {cpu[name]:6.2f} s CPU)  "
              f"{base / secs:5.2f}x the plain loop")


def _child_peak_rss(src: Path, work: Path) -> None:
    """In a child process: crop ``src`` and print peak RSS (KiB) before and after cropping."""
    cfg = work / f"{src.stem}.yaml"
    write_config(cfg, src, "auto", "mkv")
    import pipeline.crop.core  # noqa: F401 - count the imports in the baseline
    import stages.crop  # noqa: F401

    before = _peak_rss_kib()
    run_crop(work / f"{src.stem}_session", cfg)
    after = _peak_rss_kib()
    print(json.dumps({"before": before, "after": after}))


def _peak_rss_kib() -> int:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it does not inherit the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory(work: Path, lengths: list[int]) -> None:
    print("memory      2x2 mosaic of 160x120 tiles (MJPG) -> FFV1/.mkv; peak RSS of a fresh process")
    for n in lengths:
        src = work / f"long_{n}.avi"
        write_mosaic(src, n, 160, 120, "MJPG")
        out = subprocess.run([sys.executable, __file__, "--child-rss", str(src), "--work", str(work)],
                             check=True, capture_output=True, text=True).stdout
        rss = json.loads(out.strip().splitlines()[-1])
        print(f"  {n:6d} frames: peak RSS {rss['after'] / 1024:7.1f} MiB "
              f"(+{(rss['after'] - rss['before']) / 1024:5.1f} MiB while cropping)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--tile", default="640x360")
    ap.add_argument("--source-codec", default="MJPG")
    ap.add_argument("--codec", default="FFV1")
    ap.add_argument("--ext", default="mkv")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lengths", default="500,2000,6000")
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--child-rss", default="", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_rss:
        _child_peak_rss(Path(args.child_rss), Path(args.work))
        return
    if args.quick:
        args.frames, args.repeats, args.lengths = 40, 1, "100,400"
    tile = tuple(int(v) for v in args.tile.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_crop_") as tmp:
        work = Path(tmp)
        throughput(work, args.frames, tile, args.source_codec, args.codec, args.ext, args.repeats)  # type: ignore[arg-type]
        memory(work, [int(v) for v in args.lengths.split(",")])


if __name__ == "__main__":
    main()
