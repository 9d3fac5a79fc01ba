"""Whole-model benchmark: images per second of the pose network.

- ``--cpu``: the PyTorch reference path (what runs without a GPU) for the default hybrid model
  (conv stem to stride 8, 4 blocks of width 160, heatmap head, 96 x 128 input): inference and
  training (forward + backward + AdamW step) images/s.
- default (CUDA): one training step under bf16 autocast, Triton kernels vs eager PyTorch
  (reference path) vs ``torch.compile`` of the reference path, timed with
  ``triton.testing.do_bench``, for the default hybrid and ViTPose-B; plus the packed
  (varlen, native-resolution) backbone against resizing to one shape. On a machine without
  CUDA this mode exits with status 2 and a message.

Run: ``python benchmarks/bench_backbone.py --cpu [--batch 32] [--steps 10] [--threads 2]``
or ``python benchmarks/bench_backbone.py [--batch 64]`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _train_step(model, optimizer, images):
    def step():
        optimizer.zero_grad(set_to_none=True)
        model(images).square().mean().backward()
        optimizer.step()
    return step


def cpu_mode(batch: int, steps: int, threads: int) -> dict[str, object]:
    """Reference-path images/s of the default model on the CPU."""
    from pipeline.kernels import kernel_mode_override
    from pipeline.model import ModelConfig, build_model, count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = ModelConfig(kernels="reference")
    model = build_model(cfg)
    w, h = cfg.input_size
    images = torch.randn(batch, 3, h, w)
    report: dict[str, object] = {"mode": "cpu-reference", "threads": threads, "batch": batch,
                                 "input_wh": [w, h], "parameters": count_parameters(cfg)}
    with kernel_mode_override("reference"):
        model.eval()
        with torch.no_grad():
            model(images)
            report.update(_timed("inference", lambda: model(images), batch, steps))
        model.train()
        step = _train_step(model, torch.optim.AdamW(model.parameters(), lr=1e-3), images)
        step()
        report.update(_timed("train", step, batch, steps))
    return report


def _timed(name: str, fn, batch: int, steps: int) -> dict[str, float]:
    """Wall-clock images/s, and images per CPU-second of this process (robust to other load on
    a shared machine: with T threads busy, an idle machine gives about T times that)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {f"{name}_images_per_s": round(batch * steps / wall, 1),
            f"{name}_images_per_cpu_s": round(batch * steps / cpu, 1)}


def cuda_mode(batch: int) -> dict[str, object]:
    """Training-step time: Triton vs eager vs torch.compile, and packed vs resized batches."""
    from triton.testing import do_bench

    from pipeline.kernels import kernel_mode_override
    from pipeline.model import ModelConfig, build_model, vitpose_config

    report: dict[str, object] = {"mode": "cuda", "device": torch.cuda.get_device_name(), "batch": batch,
                                 "unit": "images/s (training step, bf16 autocast)"}
    for name, cfg in (("hybrid", ModelConfig()), ("vitpose-b", vitpose_config("base"))):
        torch.manual_seed(0)
        model = build_model(cfg, apply_kernel_mode=False).cuda().train()
        w, h = cfg.input_size
        images = torch.randn(batch, 3, h, w, device="cuda")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        row = {}
        with kernel_mode_override("triton"):
            row["triton"] = batch / do_bench(_train_step(model, opt, images)) * 1e3
        with kernel_mode_override("reference"):
            row["eager"] = batch / do_bench(_train_step(model, opt, images)) * 1e3
            compiled = torch.compile(model)
            row["compile"] = batch / do_bench(_train_step(compiled, opt, images)) * 1e3
        report[name] = {k: round(v, 1) for k, v in row.items()}
    # native-resolution packing: crops of random sizes vs resizing them all to the largest
    torch.manual_seed(0)
    model = build_model(ModelConfig(), apply_kernel_mode=False).cuda().eval()
    sizes = [(8 * int(torch.randint(8, 17, ())), 8 * int(torch.randint(6, 13, ()))) for _ in range(batch)]
    crops = [torch.randn(3, hh, ww, device="cuda") for hh, ww in sizes]
    resized = torch.randn(batch, 3, 128, 96, device="cuda")
    with kernel_mode_override("triton"), torch.no_grad():
        report["inference_packed_images_per_s"] = round(batch / do_bench(lambda: model.forward_packed(crops)) * 1e3, 1)
        report["inference_resized_images_per_s"] = round(batch / do_bench(lambda: model(resized)) * 1e3, 1)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="reference path on the CPU (no GPU needed)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 32 CPU, 64 CUDA)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps in --cpu mode")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in --cpu mode")
    args = parser.parse_args()
    if args.cpu:
        report = cpu_mode(args.batch or 32, args.steps, args.threads)
    else:
        if not torch.cuda.is_available():
            print("bench_backbone.py: the Triton / eager / torch.compile comparison needs a CUDA GPU "
                  "(torch.cuda.is_available() is False). For the CPU figure run: "
                  "python benchmarks/bench_backbone.py --cpu", file=sys.stderr)
            return 2
        report = cuda_mode(args.batch or 64)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
