"""Frames/s per camera of each built-in pose2d backend on this machine, at the demo resolution.

Crops calib_data's capture (six 560 x 420 cameras, 60 frames; the demo's input) once, then runs
the pose2d stage with each backend on it and reports frames/s per camera (network + decode +
grouping, the stream decode overlapped on its thread), and, where ground truth exists, the 2D
accuracy. Uses the shipped checkpoints; with ``--random`` (or when they are missing) randomly
initialised models of the same configs, which time the same work but give no accuracy.

    python benchmarks/bench_pose2d.py [--frames 30] [--cameras cam0,cam1] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALIB = REPO / "calib_data"


def _random_weights(folder: Path) -> dict[str, Path]:
    import torch

    from pipeline.artifacts import load_yaml_file
    from pipeline.config import from_mapping
    from pipeline.model import ModelConfig, build_model
    from pipeline.training.checkpoint import export_weights

    out = {}
    for name, cfg_file in (("bottomup", "train_bottomup.yaml"), ("topdown", "train_topdown.yaml")):
        cfg = from_mapping(ModelConfig, load_yaml_file(REPO / "configs" / cfg_file)["model"], cfg_file)
        torch.manual_seed(0)
        out[name] = folder / f"{name}.pt"
        export_weights(out[name], build_model(cfg).state_dict(), cfg)
    return out


def _limit_frames(session: Path, frames: int, cameras: list[str] | None) -> None:
    from pipeline.artifacts import read_yaml, write_yaml

    data = read_yaml(session / "session.yaml", "session@1")
    rec = data["recordings"]["capture"]
    rec["cameras"] = {c: {**e, "frame_count": min(e["frame_count"], frames)} for c, e in rec["cameras"].items()
                      if not cameras or c in cameras}
    data.pop("schema", None)
    write_yaml(session / "session.yaml", data, "session@1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per camera (<= 60)")
    ap.add_argument("--cameras", default="", help="comma-separated cameras (default all six)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random", action="store_true", help="random weights of the default configs")
    ap.add_argument("--backends", default="bottomup,topdown,topdown-fixed,topdown-flip,onnx")
    ap.add_argument("--bottomup-weights", default="", help="checkpoint instead of the shipped bottomup_ae")
    ap.add_argument("--topdown-weights", default="", help="checkpoint instead of the shipped topdown_heatmap")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from pipeline.pose2d.build import default_weights, load_posecap_model
    from pipeline.pose2d.evaluate import crop_capture, pose2d_figures
    from pipeline.stage import StageContext
    from stages.pose2d import STAGE, Pose2dParams

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        session = crop_capture(CALIB, tmp / "session")
        cameras = [c for c in args.cameras.split(",") if c] or None
        _limit_frames(session, args.frames, cameras)
        given = {"bottomup": args.bottomup_weights, "topdown": args.topdown_weights}
        shipped_names = {"bottomup": "bottomup_ae", "topdown": "topdown_heatmap"}
        w = {k: Path(v).resolve() if v else default_weights(shipped_names[k]) for k, v in given.items()}
        shipped = w["bottomup"].is_file() and w["topdown"].is_file()
        if args.random or not shipped:
            w = _random_weights(tmp)
            print("weights: random (default configs)")
        else:
            print(f"weights: {w['bottomup']}, {w['topdown']}")
        base = Pose2dParams(device=args.device, threads=args.threads, bottomup_weights=str(w["bottomup"]),
                            topdown_weights=str(w["topdown"]))
        runs = {"bottomup": {"backend": "bottomup"}, "topdown": {"backend": "topdown", "crop": "native"},
                "topdown-fixed": {"backend": "topdown", "crop": "fixed"},
                "topdown-flip": {"backend": "topdown", "flip_test": True}}
        if "onnx" in args.backends:
            try:
                from pipeline.pose2d.onnx import export_onnx

                export_onnx(load_posecap_model(w["topdown"], torch.device("cpu"), head="topdown"), tmp / "td.onnx")
                runs["onnx"] = {"backend": "onnx", "onnx_model": str(tmp / "td.onnx")}
            except ImportError as exc:
                print(f"onnx: skipped ({exc})")
        print(f"{'backend':<15}{'frames/s/camera':>16}{'median px':>11}{'recall':>8}")
        for name, extra in runs.items():
            if name not in args.backends.split(","):
                continue
            params = dataclasses.replace(base, **extra)
            t0 = time.perf_counter()
            STAGE.run(StageContext(session, params, None, tmp, show_progress=False))
            wall = time.perf_counter() - t0
            from pipeline.artifacts import read_yaml

            meta = read_yaml(session / "pose2d" / "pose2d.yaml", "pose2d@1")
            fps = [t["frames_per_s"] for t in meta["camera_timing"].values()]
            fig = None if args.random or not shipped else pose2d_figures(session / "pose2d", CALIB / "ground_truth")
            acc = f"{fig.median_px:>11.2f}{fig.recall:>8.3f}" if fig else f"{'-':>11}{'-':>8}"
            print(f"{name:<15}{sum(fps) / len(fps):>16.2f}{acc}   (stage wall {wall:.1f} s)")


if __name__ == "__main__":
    main()
