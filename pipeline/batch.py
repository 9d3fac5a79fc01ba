"""``posecap run-batch``: run many sessions on one executor; a failing session never stops the others.

Each session is a config file (globs allowed). Sessions run side by side, as many at once as the
executor has slots; each one goes through the same :class:`~pipeline.runner.Runner` as
``posecap run`` (same fingerprints, same per-session run lock), so a rerun of the batch redoes
only what is stale: typically just the sessions that failed.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError, PosecapError
from pipeline.executors.base import Executor

log = logging.getLogger("posecap")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SessionOutcome:
    """What happened to one session of a batch.

    Attributes:
        config: the session's config file.
        session_dir: its session folder (None when the config could not be read).
        ran: stages that ran; up_to_date: stages skipped as up to date.
        error: "" when the session succeeded, else one line: the failing stage and its message.
        seconds: wall time of the session.
    """

    config: Path
    session_dir: Path | None
    ran: tuple[str, ...]
    up_to_date: tuple[str, ...]
    error: str
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class BatchReport:
    sessions: tuple[SessionOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.sessions)

    @property
    def failed(self) -> tuple[SessionOutcome, ...]:
        return tuple(s for s in self.sessions if not s.ok)


def expand_configs(patterns: Sequence[str]) -> list[Path]:
    """Config files named by ``patterns`` (paths or globs), in order, each once.

    Raises ConfigError naming a path that does not exist or a glob that matches nothing.
    """
    out: list[Path] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                raise ConfigError(f"{pattern}: no config file matches this pattern; check the glob (quote it "
                                  "so the shell does not expand it)")
        else:
            if not Path(pattern).is_file():
                raise ConfigError(f"{pattern}: config file not found; pass session config YAML files or globs")
            matches = [Path(pattern)]
        for m in matches:
            if m.resolve() not in {p.resolve() for p in out}:
                out.append(m)
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(exc, PosecapError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def run_session(config_path: Path, stages: Sequence[Any], sections: Mapping[str, type], executor: Executor,
                force: Sequence[str] = (), on_error: Literal["fail", "skip-dependents"] = "skip-dependents",
                ) -> SessionOutcome:
    """Run one session of a batch; every error becomes the outcome's one-line ``error``."""
    from pipeline.config import load_config
    from pipeline.runner import Runner

    t0 = time.perf_counter()
    session_dir = None
    try:
        config = load_config(config_path, sections)
        if config.session_dir is None:
            raise ConfigError(f"{config_path}: key 'session_dir' missing; set it to the session folder")
        session_dir = config.session_dir
        runner = Runner(stages, config, session_dir, show_progress=False, executor=executor)
        report = runner.run(force=force, on_error=on_error)
    except Exception as exc:  # noqa: BLE001 - one session's failure is reported, the batch goes on
        log.debug("session %s failed", config_path, exc_info=True)
        return SessionOutcome(config_path, session_dir, (), (), _one_line(exc), time.perf_counter() - t0)
    error = ""
    if report.failed:
        name, why = next(iter(report.failed.items()))
        error = f"stage '{name}' failed: {why.splitlines()[0] if why else ''}"
    elif report.blocked:
        name, why = next(iter(report.blocked.items()))
        error = f"stage '{name}' blocked: {why}"
    return SessionOutcome(config_path, session_dir, tuple(report.ran), tuple(report.skipped_up_to_date), error,
                          time.perf_counter() - t0)


def run_batch(config_paths: Sequence[Path], executor: Executor, stages: Sequence[Any] | None = None,
              sections: Mapping[str, type] | None = None, force: Sequence[str] = (),
              on_error: Literal["fail", "skip-dependents"] = "skip-dependents") -> BatchReport:
    """Run every session; as many at once as ``executor.slots``; outcomes in the order given.

    Args:
        config_paths: session config files.
        executor: where the stages run (shared by all sessions).
        stages, sections: the stages and config sections (default: the registered ones).
        force: stage names to rerun in every session, or ``["all"]``.
        on_error: within a session, stop at its first failing stage or skip only its dependents.
    """
    if stages is None or sections is None:
        from stages import config_sections, load_stages

        stages = load_stages() if stages is None else stages
        sections = config_sections() if sections is None else sections
    paths = [Path(p) for p in config_paths]
    width = max(1, min(len(paths), executor.slots))
    with ThreadPoolExecutor(width, thread_name_prefix="posecap-session") as threads:
        futures = [threads.submit(run_session, p, stages, sections, executor, force, on_error) for p in paths]
        outcomes = tuple(f.result() for f in futures)
    for o in outcomes:
        if o.ok:
            log.info("%s: done in %.1f s (%d stage(s) ran)", o.config, o.seconds, len(o.ran))
        else:
            log.error("%s: FAILED: %s", o.config, o.error)
    return BatchReport(outcomes)


def summary_table(report: BatchReport) -> str:
    """One line per session: result, stages run, time, and the reason for a failure."""
    rows = [("session", "result", "ran", "seconds", "why")]
    for o in report.sessions:
        rows.append((str(o.config), "ok" if o.ok else "FAILED", str(len(o.ran)), f"{o.seconds:.1f}", o.error))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  " + r[4] if r[4] else "") for r in rows]
    failed = len(report.failed)
    lines.append(f"{len(report.sessions) - failed} of {len(report.sessions)} session(s) ok"
                 + (f", {failed} failed" if failed else ""))
    return "\n".join(lines)
