"""The local executor with workers: a process pool on this machine.

Tasks run in ``workers`` spawned processes (spawn, not fork: a forked torch or OpenCV can hang).
Each worker limits its maths libraries to one thread, so ``workers`` tasks share the cores
instead of fighting over them. Resource requests are not enforced: every task takes one worker.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from pipeline.executors.base import ONE_CPU, Executor, Handle, Resources

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _init_worker() -> None:
    """Pool worker start: one maths thread per worker process (torch reads the variable when imported)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class _FutureHandle(Handle):
    def __init__(self, future: Future) -> None:
        self.future = future

    def result(self) -> Any:
        return self.future.result()


class LocalPoolExecutor(Executor):
    """A pool of ``workers`` processes; stages run in the calling process, their chunks in the pool.

    Args:
        workers: processes in the pool (>= 2; one worker is :class:`InlineExecutor`'s job).
    """

    name = "local"

    def __init__(self, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a process pool needs workers >= 2; got {workers}")
        self.slots = workers
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:  # started on first use: a run with nothing to do starts no processes
            self._pool = ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker)
        return self._pool

    def submit(self, fn: Callable[[Any], Any], item: Any, resources: Resources = ONE_CPU) -> Handle:
        return _FutureHandle(self._get_pool().submit(fn, item))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
