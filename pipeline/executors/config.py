"""The ``executor`` config section and the executor it builds.

Which executor runs a session changes where the work happens, never what it produces: the
section is not part of any stage's fingerprint, so switching executors reruns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config import param
from pipeline.executors.base import Executor, InlineExecutor


@dataclass(frozen=True)
class ExecutorParams:
    """executor: where stages and their chunks run (local process pool or Ray); results do not depend on it."""

    kind: Literal["local", "ray"] = param("local", "local (this machine) or ray (a Ray cluster; pip install "
                                                   "'posecap[ray]'); the CLI's --executor overrides it")
    workers: int = param(1, "local: processes for chunks and stages at once (1 = everything in this process); "
                            "ray: CPUs of a Ray started on this machine when no address is given")
    address: str = param("", "ray: cluster address printed by `ray start --head` (empty = $RAY_ADDRESS, else "
                             "a Ray started on this machine)")
    task_cpus: float = param(1.0, "ray: CPUs each task asks for")
    task_gpus: float = param(1.0, "ray: GPUs a task on CUDA asks for (pose2d); 0.5 lets two tasks share a GPU")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"'workers' must be >= 1, got {self.workers}")
        if self.task_cpus <= 0 or self.task_gpus < 0:
            raise ValueError("'task_cpus' must be > 0 and 'task_gpus' >= 0")


def make_executor(params: ExecutorParams) -> Executor:
    """The executor ``params`` asks for (a ConfigError naming the install command when Ray is missing)."""
    if params.kind == "ray":
        from pipeline.executors.ray_backend import RayExecutor

        return RayExecutor(params.address, params.workers, params.task_cpus, params.task_gpus)
    if params.workers == 1:
        return InlineExecutor()
    from pipeline.executors.local import LocalPoolExecutor

    return LocalPoolExecutor(params.workers)
