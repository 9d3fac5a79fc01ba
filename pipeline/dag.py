"""The stage graph, derived from what each stage declares it reads and writes.

Stage B depends on stage A when one of B's inputs is one of A's outputs, lies inside an output
folder of A, or is a folder holding one of A's outputs. There is never a hand-written order.
"""

from __future__ import annotations

import graphlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import ConfigError, DagError
from pipeline.stage import Stage, StageContext


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


@dataclass(frozen=True)
class Node:
    """A stage bound to a session: its context and resolved absolute paths."""

    stage: Stage
    ctx: StageContext
    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]
    optional: tuple[Path, ...] = ()  # the inputs that came from ``Stage.optional_inputs``

    @property
    def name(self) -> str:
        return self.stage.name

    def rel(self, path: Path) -> str:
        """A path as written in messages and the lock: relative to the session when inside it."""
        try:
            return str(path.relative_to(self.ctx.session_dir))
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class Dag:
    nodes: dict[str, Node]
    deps: dict[str, frozenset[str]]  # stage -> stages it reads from

    def order(self) -> list[str]:
        """Stage names in dependency order; among ready stages, the earliest declared goes first."""
        sorter = graphlib.TopologicalSorter({n: sorted(d) for n, d in self.deps.items()})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise DagError(f"stage graph has a cycle: {cycle}; fix the stages' declared inputs/outputs") from None
        rank = {n: i for i, n in enumerate(self.nodes)}
        out: list[str] = []
        pool: set[str] = set()
        while sorter.is_active():
            pool.update(sorter.get_ready())
            first = min(pool, key=rank.__getitem__)  # among ready stages, the earliest declared
            pool.discard(first)
            out.append(first)
            sorter.done(first)
        return out

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for dep in self.deps[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    def producers(self, path: Path) -> list[str]:
        return [n for n, node in self.nodes.items() if any(_overlaps(path, o) for o in node.outputs)]

    def check_name(self, name: str) -> None:
        if name not in self.nodes:
            raise DagError(f"unknown stage '{name}'; stages are: {', '.join(self.nodes)}")


def build_dag(stages: Sequence[Stage], config: Config, session_dir: Path, show_progress: bool = True,
              executor: Any = None) -> Dag:
    """Bind stages to a session and connect them by their declared paths.

    ``executor`` is handed to every stage's context (where its chunk tasks run); None = in-process.

    Raises DagError on a cycle, on two stages writing the same path, or when a stage reads
    a path that no stage writes and that does not exist.
    """
    nodes: dict[str, Node] = {}
    for stage in stages:
        if stage.name in nodes:
            raise DagError(f"two stages are named '{stage.name}'")
        ctx = StageContext(
            session_dir=session_dir,
            params=config.sections[stage.name],
            config=config,
            config_dir=config.config_dir,
            show_progress=show_progress,
            executor=executor,
        )
        ins = tuple(_resolve(p, session_dir) for p in stage.inputs(ctx))
        outs = tuple(_resolve(p, session_dir) for p in stage.outputs(ctx))
        for o in outs:
            if session_dir != o and session_dir not in o.parents:
                raise DagError(f"stage '{stage.name}' declares output {o} outside the session folder {session_dir}")
        nodes[stage.name] = Node(stage, ctx, ins, outs)
    def available(p: Path) -> bool:  # exists, or some stage writes it
        return p.exists() or any(_overlaps(p, o) for n in nodes.values() for o in n.outputs)

    # a stage that could run: each required input exists or is written by a stage
    runnable = {n for n, node in nodes.items() if all(available(p) for p in node.inputs)}
    for name, node in list(nodes.items()):  # optional inputs count when present or made by a runnable stage
        optional = tuple(_resolve(p, session_dir) for p in node.stage.optional_inputs(node.ctx))
        kept = tuple(p for p in optional if p not in node.inputs and (p.exists() or any(
            _overlaps(p, o) for m in runnable - {name} for o in nodes[m].outputs)))
        nodes[name] = Node(node.stage, node.ctx, node.inputs + kept, node.outputs, kept)
    for a, na in nodes.items():
        for b, nb in nodes.items():
            if a < b and any(_overlaps(x, y) for x in na.outputs for y in nb.outputs):
                raise DagError(f"stages '{a}' and '{b}' both write the same path; give each its own outputs")
    deps: dict[str, frozenset[str]] = {}
    for name, node in nodes.items():
        found: set[str] = set()
        for path in node.inputs:
            found.update(p for p, other in nodes.items()
                         if p != name and any(_overlaps(path, o) for o in other.outputs))
        deps[name] = frozenset(found)
    dag = Dag(nodes, deps)
    dag.order()  # raises on a cycle
    return dag


def missing_inputs(dag: Dag, name: str) -> list[Path]:
    """Inputs of stage ``name`` that no stage produces and that do not exist."""
    node = dag.nodes[name]
    return [p for p in node.inputs if p not in node.optional and not p.exists() and not dag.producers(p)]


def _resolve(path: str | Path, session_dir: Path) -> Path:
    """Session-relative paths are joined to the session folder; absolute ones are kept.

    Raises ConfigError when a relative path leads out of the session folder (``..``), which a
    name taken from the config (a recording, a camera) can do.
    """
    p = Path(path)
    if not p.is_absolute():
        joined = os.path.normpath(session_dir / p)
        if os.path.commonpath([joined, os.path.normpath(session_dir)]) != os.path.normpath(session_dir):
            raise ConfigError(f"{session_dir}: the path '{path}' leads outside the session folder; "
                              "recording and camera names in the config may not contain '..'")
    return (p if p.is_absolute() else session_dir / p).resolve()
