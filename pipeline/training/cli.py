"""``posecap train CONFIG``: train a pose model on rendered people (see docs/training.md).

The lead wires :func:`build_arg_parser` / :func:`main` into ``posecap``; ``python -m
pipeline.training.cli CONFIG`` runs it directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_arg_parser", "main"]


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``train`` command's arguments (added to ``parser`` when given, e.g. a subparser)."""
    p = parser or argparse.ArgumentParser(prog="posecap train", description=__doc__.splitlines()[0])
    p.add_argument("config", help="training config YAML (configs/train_topdown.yaml, train_bottomup.yaml, ...)")
    p.add_argument("--out", default=None, help="output folder (default: the config's train.out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly")
    p.add_argument("--steps", type=int, default=None, help="stop at this step (the schedule keeps train.steps)")
    p.add_argument("--export", default=None, metavar="PT",
                   help="after training, copy the best weights (fp16) here and write the metrics YAML beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``posecap train``; returns the exit status (2 with a one-line message on user errors)."""
    args = build_arg_parser().parse_args(argv)
    from pipeline.errors import PosecapError

    try:
        from pipeline.training.config import load_train_config
        from pipeline.training.trainer import Trainer

        sections = load_train_config(args.config)
        trainer = Trainer(sections, out_dir=args.out, progress=not args.no_progress)
        if args.resume:
            trainer.resume()
        metrics = trainer.run(args.steps)
        print(f"step {trainer.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        print(f"best: {trainer.best}; checkpoint {trainer.out_dir / 'last.pt'}")
        if args.export:
            from pipeline.weights import publish

            publish(trainer.out_dir, args.config, args.export)
            print(f"exported {args.export}")
    except PosecapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
