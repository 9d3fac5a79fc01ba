"""The ``posecap`` command line.

Heavy modules (cv2, torch, the stages) are imported inside commands, so ``posecap --help`` is
instant. A user error prints one line and exits 2; an interrupt exits 130 and a rerun resumes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.errors import ConfigError, PosecapError

log = logging.getLogger("posecap")


def _setup_logging(verbosity: int) -> None:
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("posecap: %(message)s" if verbosity <= 0 else
                                           "posecap %(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def _load(config_path: str | None, session_dir: str | None = None):
    from pipeline.config import load_config
    from stages import config_sections

    if config_path is not None and not Path(config_path).is_file():
        raise ConfigError(f"{config_path}: config file not found; pass the path of a session config YAML")
    return load_config(config_path, config_sections(), session_dir=session_dir)


def _executor_params(args: argparse.Namespace, config):
    """The config's ``executor`` section with the command line's --executor / --workers / --address over it."""
    import dataclasses

    from pipeline.executors import ExecutorParams

    params = config.sections.get("executor", ExecutorParams()) if config is not None else ExecutorParams()
    changes = {k: v for k, v in (("kind", getattr(args, "executor", None)), ("workers", getattr(args, "workers", None)),
                                 ("address", getattr(args, "address", None))) if v is not None}
    try:
        return dataclasses.replace(params, **changes)
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from None


def _runner(args: argparse.Namespace, session_dir: str | None = None, executor=None):
    from pipeline.runner import Runner
    from stages import load_stages

    config = _load(args.config, session_dir)
    if config.session_dir is None:
        raise ConfigError(f"{args.config}: key 'session_dir' missing; set it to the session folder "
                          "(relative to the config file)")
    return Runner(load_stages(), config, config.session_dir, show_progress=args.verbosity >= 0, executor=executor)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.executors import make_executor

    with make_executor(_executor_params(args, _load(args.config))) as executor:
        runner = _runner(args, executor=executor)
        report = runner.run(force=args.force or (), until=args.until, only=args.only, on_error=args.on_error)
    for name, why in report.failed.items():
        print(f"FAILED  {name}: {why}", file=sys.stderr)
    for name, why in report.skipped_dependents.items():
        print(f"SKIPPED {name}: {why}", file=sys.stderr)
    log.info("ran %d stage(s), %d up to date", len(report.ran), len(report.skipped_up_to_date))
    return 0 if report.ok else 1


def cmd_run_batch(args: argparse.Namespace) -> int:
    from pipeline.batch import expand_configs, run_batch, summary_table
    from pipeline.executors import make_executor

    paths = expand_configs(args.configs)
    config = None
    for path in paths:  # the executor section of the first config that reads; a broken one fails alone below
        try:
            config = _load(str(path))
            break
        except PosecapError:
            continue
    with make_executor(_executor_params(args, config)) as executor:
        report = run_batch(paths, executor, force=args.force or (), on_error=args.on_error)
    print(summary_table(report))
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    runner = _runner(args)
    rows = runner.status()
    width = max([len(r.name) for r in rows] + [5])
    print(f"{'stage':<{width}}  {'state':<10}  why")
    for r in rows:
        print(f"{r.name:<{width}}  {r.state.value:<10}  {'; '.join(r.reasons)}")
    return 0


def cmd_dag(args: argparse.Namespace) -> int:
    print(_runner(args).describe())
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    session = Path(args.session_dir).resolve()
    runner = _runner(args, session_dir=str(session))
    if not session.is_dir():
        node = runner.dag.nodes[args.stage]
        if any(session in p.parents for p in node.inputs):
            raise PosecapError(f"{session}: session folder not found; pass a folder laid out as in the README")
        session.mkdir(parents=True)  # a first stage (crop) reads only external inputs: start the session
    report = runner.run(force=[args.stage] if args.force else (), only=args.stage)
    if report.skipped_up_to_date:
        log.info("%s is up to date (use --force to rerun)", args.stage)
    return 0


def cmd_defaults(args: argparse.Namespace) -> int:
    from pipeline.config import render_defaults
    from stages import config_sections

    sys.stdout.write(render_defaults(config_sections(), header=DEFAULTS_HEADER))
    return 0


# commands with their own argument parsers: `posecap NAME ARGS...` calls MODULE.main(ARGS)
DELEGATED: dict[str, tuple[str, str]] = {
    "synth": ("pipeline.synth.cli", "generate a synthetic capture session with ground truth"),
    "train": ("pipeline.training.cli", "train a pose model on rendered people (configs/train_*.yaml)"),
    "view": ("pipeline.visualization.viewer", "interactive 3D playback of a session (needs a display)"),
    "rig-import": ("pipeline.calibration.rig_cli:import_main",
                   "convert an anipose / Pose2Sim / EasyMocap calibration into calib/rig.yaml"),
    "rig-export": ("pipeline.calibration.rig_cli:export_main",
                   "write calib/rig.yaml as anipose / Pose2Sim / EasyMocap calibration files"),
}


def _delegate(argv: list[str]) -> int | None:
    """Run a delegated command if ``argv`` names one (after global flags); else None."""
    i = 0
    while i < len(argv) and argv[i] in ("-v", "--verbose", "-q", "--quiet"):
        i += 1
    if i >= len(argv) or argv[i] not in DELEGATED:
        return None
    _setup_logging(1 if "-v" in argv[:i] or "--verbose" in argv[:i] else -1 if argv[:i] else 0)
    import importlib

    module_name, _, func_name = DELEGATED[argv[i]][0].partition(":")
    entry = getattr(importlib.import_module(module_name), func_name or "main")
    try:
        return int(entry(argv[i + 1:]) or 0)
    except PosecapError as exc:
        print(f"posecap: error: {exc}", file=sys.stderr)
        return exc.exit_code


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(Path(args.dir), show_progress=args.verbosity >= 0)


DEFAULTS_HEADER = """\
# posecap default config: every param of every stage, with its default and what it does.
# Generated by `posecap defaults`; a session config overrides any subset of these keys.
"""


def _executor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], help="where stages and chunks run (default: the "
                   "config's executor.kind, else local); ray needs pip install 'posecap[ray]'")
    p.add_argument("--workers", type=int, metavar="N", help="local: worker processes; ray: CPUs of a Ray "
                   "started here (default: the config's executor.workers)")
    p.add_argument("--address", metavar="HOST:PORT", help="ray: cluster address (default: executor.address, "
                   "else $RAY_ADDRESS, else a Ray started here)")


def build_parser() -> argparse.ArgumentParser:
    from stages import STAGE_MODULES

    parser = argparse.ArgumentParser(prog="posecap", description="Multi-camera human pose capture.")
    parser.add_argument("--version", action="version", version=f"posecap {__version__}")
    parser.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                        help="debug logging")
    parser.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                        help="warnings and errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the whole pipeline (only stale stages) for a session config")
    p.add_argument("config", help="session config YAML")
    p.add_argument("--force", action="append", metavar="STAGE|all", help="rerun a stage even if up to date")
    p.add_argument("--until", metavar="STAGE", help="stop after this stage (runs what it needs)")
    p.add_argument("--only", metavar="STAGE", help="run just this stage")
    p.add_argument("--on-error", choices=["fail", "skip-dependents"], default="fail",
                   help="on a failing stage: stop, or skip what depends on it and go on")
    _executor_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("run-batch", help="run many sessions (configs or globs) locally or on Ray; a failing "
                                         "session does not stop the others")
    p.add_argument("configs", nargs="+", metavar="CONFIG_OR_GLOB", help="session config YAMLs or quoted globs")
    p.add_argument("--force", action="append", metavar="STAGE|all", help="rerun a stage in every session")
    p.add_argument("--on-error", choices=["fail", "skip-dependents"], default="skip-dependents",
                   help="within a session: stop at a failing stage, or skip what depends on it and go on")
    _executor_flags(p)
    p.set_defaults(func=cmd_run_batch, config=None)

    p = sub.add_parser("status", help="table of stages: up-to-date / stale / never run / blocked, and why")
    p.add_argument("config")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("dag", help="print the stage graph derived from the stages' inputs and outputs")
    p.add_argument("config")
    p.set_defaults(func=cmd_dag)

    p = sub.add_parser("defaults", help="print every param of every stage with its default (default.yaml)")
    p.set_defaults(func=cmd_defaults)

    for name, (_, summary) in DELEGATED.items():
        sub.add_parser(name, help=f"{summary} (`posecap {name} -h` for its options)", add_help=False)

    p = sub.add_parser("demo", help="run the whole pipeline on the built-in sample and compare with ground truth")
    p.add_argument("dir", nargs="?", default="posecap-demo", help="folder to work in (default: ./posecap-demo)")
    p.set_defaults(func=cmd_demo)

    for name, (_, summary) in STAGE_MODULES.items():
        p = sub.add_parser(name, help=f"stage: {summary}")
        p.add_argument("session_dir", help="session folder (layout as in the README)")
        p.add_argument("--config", help="session config YAML (default: built-in defaults)")
        p.add_argument("--force", action="store_true", help="rerun even if up to date")
        p.set_defaults(func=cmd_stage, stage=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    delegated = _delegate(argv)
    if delegated is not None:
        return delegated
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    _setup_logging(args.verbosity)
    try:
        return args.func(args)
    except PosecapError as exc:
        print(f"posecap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("posecap: interrupted; finished stages are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
