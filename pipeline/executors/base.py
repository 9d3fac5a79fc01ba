"""The executor interface: submit a picklable function call, with a resource request, get a handle.

An executor runs ``fn(item)`` somewhere (this process, a worker process, a Ray worker) and gives
back a :class:`Handle` whose ``result()`` blocks and returns the value or re-raises the error.
Results come back in submission order from :meth:`Executor.map`, so whatever a stage merges from
them is merged the same way under every executor.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resources:
    """What one task asks for.

    Attributes:
        cpus: CPU cores (Ray's ``num_cpus``).
        gpus: GPUs (Ray's ``num_gpus``); a local executor runs GPU tasks one at a time.
        gpus_if_available: ask for ``gpus`` only where the cluster has GPUs (pose2d with
            ``device: auto``); else the task runs on CPUs.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    gpus_if_available: bool = False

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0:
            raise ValueError(f"resources must be >= 0; got cpus={self.cpus}, gpus={self.gpus}")


ONE_CPU = Resources()


class Handle(abc.ABC):
    """A submitted task."""

    @abc.abstractmethod
    def result(self) -> Any:
        """Block until the task is done; return its value or raise its error."""


class _Done(Handle):
    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class Executor(abc.ABC):
    """Runs tasks. ``name`` is ``local`` or ``ray``; ``slots`` is how many tasks may usefully run at once."""

    name: str = "local"
    slots: int = 1

    @abc.abstractmethod
    def submit(self, fn: Callable[[Any], Any], item: Any, resources: Resources = ONE_CPU) -> Handle:
        """Start ``fn(item)``; ``fn`` must be a module-level function and ``item`` picklable."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], resources: Resources = ONE_CPU) -> list[Any]:
        """``[fn(item) for item in items]``, run in parallel where the executor can; results in order.

        Every task is waited for before the first error (in item order) is raised, so no task is
        left running behind the caller's back.
        """
        handles = [self.submit(fn, item, resources) for item in items]
        out: list[Any] = []
        first: BaseException | None = None
        for h in handles:
            try:
                out.append(h.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below once every task is done
                out.append(None)
                first = first or exc
        if first is not None:
            raise first
        return out

    def run_stage(self, run: Callable[[Any], None], ctx: Any) -> None:
        """Run one stage (``run(ctx)``): here, in the calling thread; its chunks go to :meth:`submit`."""
        run(ctx)

    def close(self) -> None:  # noqa: B027 - executors without workers hold nothing
        """Release workers (safe to call twice)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineExecutor(Executor):
    """Runs every task at once, in this process: the single-machine, single-process baseline."""

    name = "local"
    slots = 1

    def submit(self, fn: Callable[[Any], Any], item: Any, resources: Resources = ONE_CPU) -> Handle:
        try:
            return _Done(fn(item))
        except Exception as exc:  # noqa: BLE001 - handed back through the handle, like a remote task's
            return _Done(error=exc)
