"""What a stage declares: name, params, inputs, outputs, code version, and the function it runs.

A stage module in ``stages/`` builds one :class:`Stage`. The engine derives the DAG from the
declared inputs and outputs; a stage never calls another stage, and never imports the runner.

Paths are relative to the session folder (``"calib/rig.yaml"``, ``"streams"``); a folder path
stands for every file below it. An input may also be an absolute path outside the session
(a raw recording named in config).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ArtifactError


@dataclass(frozen=True)
class StageContext:
    """Everything a running stage may use.

    Attributes:
        session_dir: the session folder all relative artifact paths are resolved against.
        params: the stage's own config section, an instance of ``Stage.params_type``.
        config: the whole parsed config (for shared sections such as ``board``).
        config_dir: folder of the config file, for resolving relative external inputs.
        show_progress: whether to draw progress bars.
        executor: where :meth:`map` sends the stage's chunk tasks (a ``pipeline.executors``
            executor); None = in this process. A stage never asks which one it is.
    """

    session_dir: Path
    params: Any
    config: Any
    config_dir: Path
    show_progress: bool = True
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("posecap"))
    executor: Any = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], resources: Any = None) -> list[Any]:
        """``[fn(item) for item in items]`` on the engine's executor, in parallel where it can; results in order.

        ``fn`` must be a module-level function and each item picklable (it may run in another
        process or on another machine, which sees the session folder at the same path).
        ``resources`` is a :class:`pipeline.executors.Resources` request per task (default: one CPU).
        """
        from pipeline.executors.base import InlineExecutor, Resources

        executor = self.executor if self.executor is not None else InlineExecutor()
        return executor.map(fn, items, resources if resources is not None else Resources())

    def path(self, relative: str | Path) -> Path:
        """Absolute path of an artifact given relative to the session folder."""
        return self.session_dir / relative

    def require(self, relative: str | Path) -> Path:
        """Like :meth:`path`, but raise a one-line ArtifactError if the file does not exist."""
        p = self.path(relative)
        if not p.exists():
            raise ArtifactError(f"{p}: required input missing; run the stage that produces it first")
        return p


PathsFn = Callable[[StageContext], Sequence[str | Path]]


@dataclass(frozen=True)
class Stage:
    """A stage declaration.

    Attributes:
        name: stage name, also its CLI command and its config section name.
        version: code version; bump it when a change alters the stage's outputs.
        params_type: dataclass type of the config section (defaults come from its fields).
        inputs: ``ctx -> paths`` the stage reads.
        outputs: ``ctx -> paths`` the stage writes (relative to the session folder).
        run: ``ctx -> None`` does the work, writing every output atomically.
        summary: one line for ``posecap --help`` and ``posecap dag``.
        optional_inputs: ``ctx -> paths`` the stage reads when they are there: each one counts as
            an input (for order and caching) when it exists or another stage writes it, and is
            left out otherwise, so a hand-made session without it is not blocked.
    """

    name: str
    version: str
    params_type: type
    inputs: PathsFn
    outputs: PathsFn
    run: Callable[[StageContext], None]
    summary: str = ""
    optional_inputs: PathsFn = field(default=lambda ctx: ())


def static_paths(*paths: str) -> PathsFn:
    """A ``PathsFn`` that always returns the same paths."""
    frozen = tuple(paths)
    return lambda ctx: frozen
