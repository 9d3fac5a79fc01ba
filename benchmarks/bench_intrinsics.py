"""Benchmark: calibrate_intrinsics against the plain script, on one long rendered sweep.

The sweep is a continuous board motion (keyframe poses joined by smooth interpolation), rendered
through a known camera with motion blur proportional to the board's image speed, so consecutive
frames are near-duplicates and fast passages are blurred, as in a real hand-held sweep.

Contenders, on the same video in one run:

- plain: the OpenCV tutorial recipe; ``cv2.findChessboardCorners`` + ``cv2.cornerSubPix`` on every
  frame in one process, then ``cv2.calibrateCamera`` on every detection. Run with the tutorial's
  half-window of 11 px and with 5 px (better suited to small squares), detecting once.
- posecap: ``pipeline.calibration.camera_job.calibrate_camera`` (process-pool detection, blur
  rejection, greedy frame selection of up to 120 views, outlier rejection), with its default auto
  stride (at most 1 000 frames examined: stride 3 on 3 000 frames) and with stride 1.

Usage: ``python benchmarks/bench_intrinsics.py [--frames 600] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.calibration.board import BoardConfig, object_points  # noqa: E402
from pipeline.calibration.camera_job import Settings, calibrate_camera, effective_stride  # noqa: E402
from pipeline.calibration.intrinsics import ray_error_px, undistortion_error_px  # noqa: E402
from tests.calibration.render import (  # noqa: E402
    TrueCamera,
    board_texture,
    default_camera,
    random_poses,
    render,
    write_video,
)


def smooth_sweep(
    cam: TrueCamera, board: BoardConfig, frames: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``frames`` poses gliding through keyframes (one per ~25 frames) with smoothstep easing."""
    keys = random_poses(cam, board, max(frames // 25, 2) + 1, np.random.default_rng(seed), tries=8)
    per = frames / (len(keys) - 1)
    poses = []
    for f in range(frames):
        k = min(int(f / per), len(keys) - 2)
        a = f / per - k
        a = a * a * (3 - 2 * a)
        (r0, t0), (r1, t1) = keys[k], keys[k + 1]
        R0, R1 = cv2.Rodrigues(r0)[0], cv2.Rodrigues(r1)[0]
        dr = cv2.Rodrigues(R1 @ R0.T)[0].ravel()
        poses.append((cv2.Rodrigues(cv2.Rodrigues(dr * a)[0] @ R0)[0].ravel(), (1 - a) * t0 + a * t1))
    return poses


def render_video(path: Path, cam: TrueCamera, board: BoardConfig, poses: list) -> None:
    texture = board_texture(board)
    rng = np.random.default_rng(1)
    centre = object_points(board).mean(axis=0, keepdims=True)
    uv = np.array([cam.project(centre, r, t)[0] for r, t in poses])
    speed = np.linalg.norm(np.gradient(uv, axis=0), axis=1)  # px per frame
    frames = [
        render(cam, board, r, t, texture=texture, rng=rng, blur_sigma=min(0.15 * s, 3.0))
        for (r, t), s in zip(poses, speed)
    ]
    write_video(path, frames)


def plain_script(
    video: Path, board: BoardConfig, size: tuple[int, int], windows: tuple[int, ...]
) -> list[dict]:
    """The tutorial recipe: detect every frame, calibrate on all detections; one result per
    cornerSubPix half-window (the tutorial's is 11; the refinement is timed per window)."""
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    found_frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found, corners = cv2.findChessboardCorners(gray, (board.cols, board.rows), None)
        if found:
            found_frames.append((gray, corners))
    detect_s = time.perf_counter() - t0
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001)
    obj = object_points(board)
    out = []
    for win in windows:
        t1 = time.perf_counter()
        imgs = [cv2.cornerSubPix(g, c.copy(), (win, win), (-1, -1), criteria) for g, c in found_frames]
        t2 = time.perf_counter()
        rms, K, dist, _, _ = cv2.calibrateCamera([obj] * len(imgs), imgs, size, None, None)
        t3 = time.perf_counter()
        out.append(
            {
                "K": K,
                "dist": dist.ravel()[:5],
                "rms": rms,
                "detect_s": detect_s + t2 - t1,
                "solve_s": t3 - t2,
                "views": len(imgs),
                "window": win,
            }
        )
    return out


def ours(video: Path, board: BoardConfig, size: tuple[int, int], work: Path, stride: int) -> dict:
    t0 = time.perf_counter()
    out = calibrate_camera(
        "cam0",
        video,
        size,
        board,
        Settings(stride=stride, workers=0),
        det_path=work / f"det_{stride}.npz",
        yaml_path=work / f"cam0_{stride}.yaml",
        png_path=work / f"cam0_{stride}.png",
        progress=False,
    )
    total = time.perf_counter() - t0
    sol = out.result.solution
    return {
        "K": sol.K,
        "dist": sol.dist,
        "rms": sol.rms,
        "total_s": total,
        "views": int(out.result.used.size),
    }


def figures(res: dict, cam: TrueCamera) -> dict:
    K, dist = res["K"], res["dist"]
    return {
        "focal_pct": float(np.max(np.abs(np.diag(K)[:2] / np.diag(cam.K)[:2] - 1)) * 100),
        "pp_px": float(np.max(np.abs(K[:2, 2] - cam.K[:2, 2]))),
        "undist_px": float(undistortion_error_px("pinhole5", K, dist, cam.K, cam.dist, cam.size).max()),
        "ray_px": float(ray_error_px("pinhole5", K, dist, cam.K, cam.dist, cam.size).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the video and outputs (reused)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_intrinsics_"))
    work.mkdir(parents=True, exist_ok=True)
    cam, board = default_camera("pinhole5"), BoardConfig()
    video = work / f"sweep_{args.frames}_{args.seed}.mkv"
    if not video.exists():
        t0 = time.perf_counter()
        render_video(video, cam, board, smooth_sweep(cam, board, args.frames, args.seed))
        print(f"rendered {args.frames} frames in {time.perf_counter() - t0:.0f} s -> {video}")

    plains = plain_script(video, board, cam.size, windows=(11, 5))
    rows = [
        (f"plain, cornerSubPix {2 * p['window'] + 1}x{2 * p['window'] + 1}", p, p["detect_s"] + p["solve_s"])
        for p in plains
    ]
    plain = plains[0]
    for stride in (0, 1):  # 0: the default, auto (at most scan_frames = 1000 frames examined)
        (work / f"det_{stride}.npz").unlink(missing_ok=True)
        res = ours(video, board, cam.size, work, stride)
        label = f"auto stride = {effective_stride(video, Settings(stride=0))}, the default" if stride == 0 else \
            f"stride {stride}"
        rows.append((f"posecap ({label})", res, res["total_s"]))

    print(
        f"\n{args.frames} frames, 640x480, {board.describe()}; plain script: {plain['views']} views "
        f"detected, detection {plain['detect_s']:.1f} s, calibrateCamera {plain['solve_s']:.1f} s\n"
    )
    print("| method | views solved | wall s | focal % | pp px | undistortion px | ray px | RMS px |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res, wall in rows:
        f = figures(res, cam)
        print(
            f"| {name} | {res['views']} | {wall:.1f} | {f['focal_pct']:.3f} | {f['pp_px']:.2f} | "
            f"{f['undist_px']:.2f} | {f['ray_px']:.2f} | {res['rms']:.3f} |"
        )


if __name__ == "__main__":
    main()
