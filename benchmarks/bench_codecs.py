"""Decode speed of the pose codecs against straightforward per-instance / per-joint loops.

Run from the repository root::

    python benchmarks/bench_codecs.py [--repeats 15]

Cases (same inputs for both columns, timed in the same run; the median of ``--repeats``):

- heatmap + DARK: 64 images x 17 joints, 64 x 48 heatmaps, sigma 2, noisy. The loop blurs each
  map with OpenCV and takes the Taylor step per joint (DARK's reference code).
- SimCC (argmax, and with 1-D DARK): 64 x 17, 192 x 256 input, k = 2.
- AE grouping: one 128 x 128 image with 30 overlapping people, 10 % of joints missing, tag
  noise 0.1. The loop is HigherHRNet's parser (per-joint NMS and top-k, dict-of-lists
  matching, per-person refine). Goal: full decode under 5 ms.

The last column is the largest coordinate difference between the two (a sanity check).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.codecs import AssociativeEmbeddingCodec, HeatmapCodec, SimCCCodec
from pipeline.codecs._reference import (
    decode_ae_loop,
    decode_heatmaps_loop,
    decode_simcc_loop,
)
from pipeline.codecs._testing import synthetic_ae_scene


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bench_heatmap(rng: np.random.Generator, repeats: int) -> list[tuple]:
    rows = []
    for refine in ("dark", "quarter"):
        codec = HeatmapCodec((192, 256), (48, 64), sigma=2.0, refine=refine)
        kp = rng.uniform([-1, -1], [48, 64], size=(64, 17, 2))
        hm = codec.encode(codec.to_input(kp)).heatmaps
        hm += rng.normal(0, 0.01, hm.shape).astype(np.float32)
        ours, _ = codec.decode(hm)
        loop, _ = decode_heatmaps_loop(hm, refine, codec.blur_kernel_size)
        diff = np.abs(codec.to_heatmap(ours) - loop).max()
        t_ours = median_ms(lambda c=codec, h=hm: c.decode(h), repeats)
        t_loop = median_ms(lambda h=hm, r=refine, c=codec: decode_heatmaps_loop(h, r, c.blur_kernel_size), 3)
        rows.append(
            (f"heatmap + {refine}, 64x17 @ 64x48", t_ours, t_loop, ">= 10x" if refine == "dark" else "", diff)
        )
    return rows


def bench_simcc(rng: np.random.Generator, repeats: int) -> list[tuple]:
    rows = []
    for use_dark in (False, True):
        codec = SimCCCodec((192, 256), split_ratio=2.0, sigma=(4.9, 5.66), use_dark=use_dark)
        t = codec.encode(rng.uniform([0, 0], [191, 255], size=(64, 17, 2)))
        sx = t.x_labels + rng.normal(0, 0.01, t.x_labels.shape).astype(np.float32)
        sy = t.y_labels + rng.normal(0, 0.01, t.y_labels.shape).astype(np.float32)
        ours, _ = codec.decode(sx, sy)
        loop, _ = decode_simcc_loop(sx, sy, 2.0, use_dark, codec.blur_kernel_size)
        t_ours = median_ms(lambda c=codec, x=sx, y=sy: c.decode(x, y), repeats)
        t_loop = median_ms(
            lambda x=sx, y=sy, d=use_dark, c=codec: decode_simcc_loop(x, y, 2.0, d, c.blur_kernel_size), 3
        )
        name = f"SimCC{' + DARK' if use_dark else ''}, 64x17, k=2"
        rows.append((name, t_ours, t_loop, ">= 10x", np.abs(ours - loop).max()))
    return rows


def bench_ae(rng: np.random.Generator, repeats: int) -> list[tuple]:
    codec = AssociativeEmbeddingCodec(input_size=(128, 128), heatmap_size=(128, 128))
    scene = synthetic_ae_scene(rng, 30, tag_noise=0.1, missing_fraction=0.1, min_separation=6.0)
    tags = scene.tags[..., None]
    persons = codec.decode(scene.heatmaps, scene.tags)
    joints, _ = decode_ae_loop(scene.heatmaps, tags, codec.skeleton.visit_order)
    same_shape = joints.shape == persons.keypoints.shape
    kp = np.nan_to_num(persons.keypoints, nan=0.0)
    diff = np.abs(kp - joints).max() if same_shape else float("nan")
    t_loop = median_ms(lambda: decode_ae_loop(scene.heatmaps, tags, codec.skeleton.visit_order), repeats)
    t_ours = median_ms(lambda: codec.decode(scene.heatmaps, scene.tags), repeats)
    cands = [c[0] for c in codec.candidates(scene.heatmaps[None], tags[None])]
    t_group = median_ms(lambda: codec.group(*cands), repeats)
    return [
        (f"AE decode, {len(persons)} people @ 128x128", t_ours, t_loop, "< 5 ms", diff),
        ("  of which matching only", t_group, float("nan"), "", float("nan")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = bench_heatmap(rng, args.repeats) + bench_simcc(rng, args.repeats) + bench_ae(rng, args.repeats)
    cpus = f"{os.cpu_count()} CPUs, {platform.machine()}"
    print(f"numpy {np.__version__}, python {platform.python_version()}, {cpus}")
    header = f"{'case':<36} {'ours ms':>9} {'loop ms':>9} {'speed-up':>9}  {'goal':<7} {'max |diff| px':>13}"
    print(header)
    print("-" * len(header))
    for name, ours, loop, goal, diff in rows:
        speed = f"{loop / ours:8.1f}x" if np.isfinite(loop) else ""
        loop_s = f"{loop:9.2f}" if np.isfinite(loop) else ""
        diff_s = f"{diff:13.1e}" if np.isfinite(diff) else ""
        print(f"{name:<36} {ours:9.2f} {loop_s:>9} {speed:>9}  {goal:<7} {diff_s:>13}")


if __name__ == "__main__":
    main()
