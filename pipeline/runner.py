"""Decide which stages are stale, and run them in dependency order.

Staleness is checked cheapest first and stops at the first reason: never run → code version →
params → the set of inputs → input contents → outputs (missing or edited by hand) → an upstream
stage that will rerun. The lock entry of a stage is written only after it succeeds.

Where a stage runs is the executor's business (:mod:`pipeline.executors`): in this thread, or as a
Ray task. The bookkeeping (status, the run lock, the lock file) always happens here. With an
executor of more than one slot, stages whose upstream stages are done run at the same time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pipeline.artifacts import remove_stale_temporaries, to_plain
from pipeline.config import Config
from pipeline.dag import Dag, build_dag, missing_inputs
from pipeline.errors import DagError, PosecapError
from pipeline.executors.base import Executor, InlineExecutor
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


def _record(name: str, error: PosecapError | None, report: RunReport, rerun: set[str]) -> None:
    """Book a finished stage: failed (logged) or ran (its dependents then count as rerun)."""
    if error is not None:
        report.failed[name] = str(error)
        log.error("%s", error)
        return
    rerun.add(name)
    report.ran.append(name)


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
        for stale in remove_stale_temporaries(session_dir):  # left by a run that was killed
            log.debug("removed %s, a temporary file of an interrupted run", stale)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Runner:
    """Runs a session's stages against its lock."""

    def __init__(self, stages: Sequence[Stage], config: Config, session_dir: Path, show_progress: bool = True,
                 executor: Executor | None = None):
        self.session_dir = Path(session_dir).resolve()
        self.executor: Executor = executor if executor is not None else InlineExecutor()
        self.dag: Dag = build_dag(stages, config, self.session_dir, show_progress, executor=self.executor)
        self.lock = Lock.load(self.session_dir)
        self._mutex = threading.RLock()  # guards self.lock between stages finishing at the same time

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

    def _decide(self, name: str, report: RunReport, rerun: set[str], force: Sequence[str],
                blocked: dict[str, str]) -> str | None:
        """Why stage ``name`` runs now, or None when it does not (the reason is recorded in ``report``)."""
        if name in blocked:
            report.blocked[name] = blocked[name]
            log.warning("%s: not run: %s", name, blocked[name])
            return None
        blocked_by = sorted(d for d in self.dag.deps[name]
                            if d in report.failed or d in report.skipped_dependents or d in report.blocked)
        if blocked_by:
            report.skipped_dependents[name] = f"upstream `{blocked_by[0]}` did not run"
            log.warning("%s: skipped, upstream `%s` did not run", name, blocked_by[0])
            return None
        with self._mutex:
            st = self.own_status(name)
        forced = "all" in force or name in force
        upstream_ran = any(d in rerun for d in self.dag.deps[name])
        if not (forced or upstream_ran or st.needs_run):
            report.skipped_up_to_date.append(name)
            log.info("%s: up to date", name)
            return None
        why = "forced" if forced else (f"upstream `{sorted(self.dag.deps[name] & rerun)[0]}` reran"
                                       if upstream_ran and not st.needs_run else "; ".join(st.reasons))
        log.info("%s: running (%s)", name, why)
        return why

    def _run_selected(self, selected: list[str], force: Sequence[str], on_error: str,
                      blocked: dict[str, str]) -> RunReport:
        if self.executor.slots > 1 and len(selected) > 1:
            return self._run_concurrent(selected, force, on_error, blocked)
        report = RunReport()
        rerun: set[str] = set()
        for name in selected:
            if self._decide(name, report, rerun, force, blocked) is None:
                continue
            try:
                self._run_one(name)
            except PosecapError as exc:
                if on_error == "fail":
                    raise
                _record(name, exc, report, rerun)
                continue
            _record(name, None, report, rerun)
        return report

    def _run_concurrent(self, selected: list[str], force: Sequence[str], on_error: str,
                        blocked: dict[str, str]) -> RunReport:
        """Like the sequential loop, but a stage starts as soon as its selected upstream stages are done."""
        report = RunReport()
        rerun: set[str] = set()
        chosen, done = set(selected), set()
        todo = list(selected)
        running: dict[Future, str] = {}
        first_error: PosecapError | None = None
        slots = self.executor.slots
        with ThreadPoolExecutor(slots, thread_name_prefix="posecap-stage") as threads:
            while todo or running:
                for name in list(todo):
                    if first_error is not None or len(running) >= slots:
                        break
                    if not (self.dag.deps[name] & chosen) <= done:
                        continue
                    todo.remove(name)
                    if self._decide(name, report, rerun, force, blocked) is None:
                        done.add(name)
                        continue
                    running[threads.submit(self._run_one, name)] = name
                if not running:
                    if first_error is not None or not todo:
                        break
                    continue  # a stage was decided without running; look at the rest again
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=lambda f: selected.index(running[f])):
                    name = running.pop(fut)
                    done.add(name)
                    try:
                        fut.result()
                    except PosecapError as exc:
                        if on_error == "fail":
                            first_error = first_error or exc
                        else:
                            _record(name, exc, report, rerun)
                        continue
                    _record(name, None, report, rerun)
        if first_error is not None:
            raise first_error
        return report

    def _run_one(self, name: str) -> None:
        node = self.dag.nodes[name]
        t0 = time.perf_counter()
        self.executor.run_stage(node.stage.run, node.ctx)
        duration = time.perf_counter() - t0
        for p in node.outputs:
            if not p.exists():
                raise PosecapError(f"stage '{name}' finished without writing its output {node.rel(p)}")
        with self._mutex:
            self._record(name, duration)

    def _record(self, name: str, duration: float) -> None:
        """Write stage ``name``'s lock entry after a successful run."""
        node = self.dag.nodes[name]
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
