"""``posecap synth OUT_DIR``: generate a synthetic capture session (also ``python -m pipeline.synth``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.errors import PosecapError


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the synth options to ``parser`` (or a new one) and return it."""
    from pipeline.synth.scene import CODECS, SynthOptions

    d = SynthOptions()
    p = parser or argparse.ArgumentParser(
        prog="posecap synth", description="Render a synthetic multi-camera session with ground truth.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created; files in it are replaced)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--frames", type=int, default=d.capture_frames,
                   help=f"frames in the capture take (default {d.capture_frames})")
    p.add_argument("--intrinsics-frames", type=int, default=d.intrinsics_frames,
                   help=f"frames in the intrinsic sweeps (default {d.intrinsics_frames})")
    p.add_argument("--extrinsics-frames", type=int, default=d.extrinsics_frames,
                   help=f"frames in the extrinsic sweep (default {d.extrinsics_frames})")
    p.add_argument("--people", type=int, default=d.people, help=f"people, 1-3 (default {d.people})")
    p.add_argument("--tile-size", type=int, nargs=2, metavar=("W", "H"), default=list(d.tile_size),
                   help=f"size of each camera image (default {d.tile_size[0]} {d.tile_size[1]})")
    p.add_argument("--fps", type=float, default=d.fps, help=f"frame rate (default {d.fps:g})")
    p.add_argument("--board", choices=("checkerboard", "charuco"), default=d.board, help="calibration board")
    p.add_argument("--inner-corners", type=int, nargs=2, metavar=("COLS", "ROWS"),
                   default=list(d.inner_corners),
                   help="board inner corners (default 9 6)")
    p.add_argument("--square-size", type=float, default=d.square_size_m, help="board square size, metres")
    p.add_argument("--codec", choices=tuple(CODECS), default=d.codec,
                   help=f"video codec (default {d.codec}; ffv1 is lossless but large)")
    p.add_argument("--noise", type=float, default=d.noise_sigma, help="sensor noise sigma, grey levels")
    p.add_argument("--stereo-offset", type=float, default=d.stereo_offset_s,
                   help="start of the stereo capture on the quad's clock, seconds (default 0)")
    p.add_argument("--stereo-fps", type=float, default=d.stereo_fps,
                   help="frame rate of the stereo capture (default: --fps)")
    p.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return p


def options_from_args(args: argparse.Namespace):
    """The :class:`SynthOptions` an argparse namespace asks for."""
    from pipeline.synth.scene import SynthOptions

    try:
        return SynthOptions(
            seed=args.seed, capture_frames=args.frames, intrinsics_frames=args.intrinsics_frames,
            extrinsics_frames=args.extrinsics_frames, people=args.people, tile_size=tuple(args.tile_size),
            fps=args.fps, board=args.board, inner_corners=tuple(args.inner_corners),
            square_size_m=args.square_size, codec=args.codec, noise_sigma=args.noise,
            stereo_offset_s=args.stereo_offset, stereo_fps=args.stereo_fps)
    except ValueError as exc:
        raise PosecapError(f"posecap synth: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Generate the session an argparse namespace describes; prints one summary line."""
    from pipeline.synth.session import generate_session

    summary = generate_session(args.out_dir, options_from_args(args), show_progress=not args.no_progress)
    frames = ", ".join(f"{k} {v}" for k, v in summary.frames.items())
    print(f"wrote {len(summary.files)} files to {summary.out_dir} ({frames} frames) "
          f"in {summary.seconds:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and generate; user errors print one line and return 2."""
    args = build_arg_parser().parse_args(argv)
    try:
        return run(args)
    except PosecapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
