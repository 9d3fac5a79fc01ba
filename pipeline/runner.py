"""Decide which stages are stale, and run them in dependency order.

Staleness is checked cheapest first and stops at the first reason: never run → code version →
params → the set of inputs → input contents → outputs (missing or edited by hand) → an upstream
stage that will rerun. The lock entry of a stage is written only after it succeeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pipeline.artifacts import to_plain
from pipeline.config import Config
from pipeline.dag import Dag, build_dag, missing_inputs
from pipeline.errors import DagError, PosecapError
from pipeline.lock import Lock, StageRecord
from pipeline.stage import Stage

log = logging.getLogger("posecap")


class State(str, Enum):
    UP_TO_DATE = "up-to-date"
    STALE = "stale"
    NEVER_RUN = "never run"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class StageStatus:
    """A stage's state and the reasons for it, e.g. ``param `crop.codec` changed``."""

    name: str
    state: State
    reasons: tuple[str, ...] = ()

    @property
    def needs_run(self) -> bool:
        return self.state in (State.STALE, State.NEVER_RUN)


@dataclass
class RunReport:
    ran: list[str] = field(default_factory=list)
    skipped_up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_dependents: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)  # inputs missing and produced by no stage

    @property
    def ok(self) -> bool:
        return not self.failed


def params_dict(params: Any) -> dict[str, Any]:
    return to_plain(dataclasses.asdict(params)) if dataclasses.is_dataclass(params) else {}


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: d}


@contextlib.contextmanager
def session_run_lock(session_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the session while stages run, so two runs never interleave."""
    lock_dir = session_dir / ".posecap"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "run.lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PosecapError(f"{session_dir}: another posecap run is working on this session; "
                               "wait for it to finish or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Runner:
    """Runs a session's stages against its lock."""

    def __init__(self, stages: Sequence[Stage], config: Config, session_dir: Path, show_progress: bool = True):
        self.session_dir = Path(session_dir).resolve()
        self.dag: Dag = build_dag(stages, config, self.session_dir, show_progress)
        self.lock = Lock.load(self.session_dir)

    # ---- status -------------------------------------------------------------------------
    def own_status(self, name: str) -> StageStatus:
        """Status of one stage looking only at itself (not at upstream stages)."""
        node = self.dag.nodes[name]
        missing = missing_inputs(self.dag, name)
        if missing:
            return StageStatus(name, State.BLOCKED, tuple(f"input `{node.rel(p)}` missing" for p in missing))
        rec = self.lock.stages.get(name)
        if rec is None:
            return StageStatus(name, State.NEVER_RUN, ("no successful run recorded",))
        if rec.version != node.stage.version:
            return StageStatus(name, State.STALE, (f"code version changed ({rec.version} -> {node.stage.version})",))
        now = _flat(params_dict(node.ctx.params), name)
        before = _flat(rec.params, name)
        changed = sorted(k for k in now.keys() | before.keys() if now.get(k, object()) != before.get(k, object()))
        if changed:
            return StageStatus(name, State.STALE, tuple(f"param `{k}` changed" for k in changed))
        in_names = {node.rel(p) for p in node.inputs}
        if in_names != set(rec.inputs):
            diff = sorted(in_names.symmetric_difference(rec.inputs))
            return StageStatus(name, State.STALE, tuple(f"input list changed: `{d}`" for d in diff))
        for p in node.inputs:
            if not p.exists() and p not in node.optional:
                return StageStatus(name, State.STALE, (f"input `{node.rel(p)}` not yet produced",))
            if self.lock.cache.digest(p) != rec.inputs.get(node.rel(p)):
                return StageStatus(name, State.STALE, (f"input `{node.rel(p)}` changed",))
        for p in node.outputs:
            digest = self.lock.cache.digest(p)
            if digest is None:
                return StageStatus(name, State.STALE, (f"output `{node.rel(p)}` missing",))
            if digest != rec.outputs.get(node.rel(p)):
                return StageStatus(name, State.STALE, (f"output `{node.rel(p)}` modified since the last run",))
        return StageStatus(name, State.UP_TO_DATE)

    def status(self) -> list[StageStatus]:
        """Every stage's status, upstream staleness propagated down."""
        out: dict[str, StageStatus] = {}
        for name in self.dag.order():
            st = self.own_status(name)
            if st.state == State.UP_TO_DATE:
                upstream = sorted(d for d in self.dag.deps[name] if out[d].state != State.UP_TO_DATE)
                if upstream:
                    st = StageStatus(name, State.STALE, tuple(f"upstream `{u}` will rerun" for u in upstream))
            elif st.state == State.BLOCKED:
                pass
            out[name] = st
        return [out[n] for n in self.dag.order()]

    # ---- run ----------------------------------------------------------------------------
    def select(self, until: str | None = None, only: str | None = None) -> list[str]:
        order = self.dag.order()
        if only is not None:
            self.dag.check_name(only)
            return [only]
        if until is not None:
            self.dag.check_name(until)
            keep = self.dag.ancestors(until) | {until}
            return [n for n in order if n in keep]
        return order

    def run(self, force: Sequence[str] = (), until: str | None = None, only: str | None = None,
            on_error: Literal["fail", "skip-dependents"] = "fail") -> RunReport:
        """Run the selected stages in dependency order, skipping those up to date.

        Args:
            force: stage names to rerun regardless of the lock, or ``["all"]``.
            until: run this stage and the stages it depends on.
            only: run just this stage; its inputs must already exist.
            A stage (in a full run) whose input inside the session does not exist and that no
            stage produces is reported in ``RunReport.blocked`` and skipped with its dependents; with ``only`` or
            ``until`` that is a DagError.
            on_error: ``fail`` stops at the first failing stage; ``skip-dependents`` skips the
                stages downstream of a failure and carries on with the rest.
        """
        for f in force:
            if f != "all":
                self.dag.check_name(f)
        selected = self.select(until, only)
        blocked: dict[str, str] = {}
        for name in selected:
            node = self.dag.nodes[name]
            for p in node.inputs:
                if p in node.optional:
                    continue  # read when there; never blocks
                if not p.exists() and not any(s in selected for s in self.dag.producers(p)):
                    who = self.dag.producers(p)
                    hint = f"run stage '{who[0]}' first" if who else "check the config and the session folder"
                    message = f"stage '{name}' needs {node.rel(p)}, which does not exist; {hint}"
                    outside = self.session_dir not in p.parents
                    if only is not None or until is not None or outside:
                        raise DagError(message)
                    blocked.setdefault(name, message)
        with session_run_lock(self.session_dir):
            return self._run_selected(selected, force, on_error, blocked)

    def _run_selected(self, selected: list[str], force: Sequence[str], on_error: str,
                      blocked: dict[str, str]) -> RunReport:
        report = RunReport()
        rerun: set[str] = set()
        for name in selected:
            if name in blocked:
                report.blocked[name] = blocked[name]
                log.warning("%s: not run: %s", name, blocked[name])
                continue
            blocked_by = sorted(d for d in self.dag.deps[name]
                                if d in report.failed or d in report.skipped_dependents or d in report.blocked)
            if blocked_by:
                report.skipped_dependents[name] = f"upstream `{blocked_by[0]}` did not run"
                log.warning("%s: skipped, upstream `%s` did not run", name, blocked_by[0])
                continue
            st = self.own_status(name)
            forced = "all" in force or name in force
            upstream_ran = any(d in rerun for d in self.dag.deps[name])
            if not (forced or upstream_ran or st.needs_run):
                report.skipped_up_to_date.append(name)
                log.info("%s: up to date", name)
                continue
            why = "forced" if forced else (f"upstream `{sorted(self.dag.deps[name] & rerun)[0]}` reran"
                                           if upstream_ran and not st.needs_run else "; ".join(st.reasons))
            log.info("%s: running (%s)", name, why)
            try:
                self._run_one(name)
            except PosecapError as exc:
                if on_error == "fail":
                    raise
                report.failed[name] = str(exc)
                log.error("%s", exc)
                continue
            rerun.add(name)
            report.ran.append(name)
        return report

    def _run_one(self, name: str) -> None:
        node = self.dag.nodes[name]
        t0 = time.perf_counter()
        node.stage.run(node.ctx)
        duration = time.perf_counter() - t0
        for p in node.outputs:
            if not p.exists():
                raise PosecapError(f"stage '{name}' finished without writing its output {node.rel(p)}")
        fresh = Lock.load(self.session_dir)  # another command may have written it meanwhile
        fresh.cache.stamps.update(self.lock.cache.stamps)
        self.lock = fresh
        cache = self.lock.cache

        def digests(paths: Sequence[Path]) -> dict[str, str | None]:
            return {node.rel(p): cache.digest(p) for p in paths}

        self.lock.stages[name] = StageRecord(
            version=node.stage.version,
            params=params_dict(node.ctx.params),
            inputs=digests(node.inputs),
            outputs=digests(node.outputs),
            finished_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            duration_s=duration,
        )
        self.lock.save()
        log.info("%s: done in %.1f s", name, duration)

    def describe(self) -> str:
        """The graph as text: each stage with what it reads and writes and what it depends on."""
        lines = []
        for name in self.dag.order():
            node = self.dag.nodes[name]
            deps = ", ".join(sorted(self.dag.deps[name])) or "-"
            lines.append(f"{name}  (after: {deps})")
            for p in node.inputs:
                lines.append(f"    reads  {node.rel(p)}")
            for p in node.outputs:
                lines.append(f"    writes {node.rel(p)}")
        return "\n".join(lines)


__all__ = ["DagError", "RunReport", "Runner", "StageStatus", "State"]
