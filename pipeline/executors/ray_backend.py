"""The Ray executor: stages and their chunks as Ray tasks, with CPU and GPU requests.

The driver (``posecap run`` / ``run-batch``) keeps the engine's bookkeeping: staleness checks,
the per-session run lock and the lock file, all on the session folder, which every worker must
see at the same path (a shared filesystem). Each stage that has to run is one Ray task; the chunk
tasks a stage fans out (pose2d, triangulate) are nested Ray tasks with their own requests, e.g.
``num_gpus`` for pose2d on CUDA. A task blocked waiting for its chunks gives its CPU back to
Ray, so nesting does not deadlock a small cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError, PosecapError
from pipeline.executors.base import ONE_CPU, Executor, Handle, Resources

log = logging.getLogger("posecap")
INSTALL_HINT = "pip install 'posecap[ray]' (or, in a source checkout, pip install -e \".[ray]\")"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor 'ray' needs Ray, which is not installed; install it with {INSTALL_HINT}") \
            from None
    return ray


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The task's own error where Ray carries one (a PosecapError stays a one-line message)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PosecapError(f"Ray task failed: {type(exc).__name__}: {first}")


class _RayHandle(Handle):
    def __init__(self, ray: Any, ref: Any) -> None:
        self.ray, self.ref = ray, ref

    def result(self) -> Any:
        try:
            return self.ray.get(self.ref)
        except self.ray.exceptions.RayError as exc:
            raise _unwrap(self.ray, exc) from None


def _run_stage_task(job: tuple[Callable[[Any], None], Any, dict[str, Any]]) -> None:
    """Ray task body: run one stage in a worker, fanning its chunks out as nested tasks."""
    run, ctx, settings = job
    executor = RayExecutor(**settings, connect=False)
    run(dataclasses.replace(ctx, executor=executor))


class RayExecutor(Executor):
    """Tasks on a Ray cluster (or on a Ray started on this machine).

    Args:
        address: cluster address (``ray start --head`` prints it); "" = ``$RAY_ADDRESS`` if set,
            else a Ray started here with ``workers`` CPUs. An already initialised Ray (a test's
            ``ray.init``) is used as it is.
        workers: CPUs of a Ray started on this machine.
        task_cpus: CPUs each task asks for.
        task_gpus: GPUs a task asks for when it needs one (pose2d on CUDA).
        connect: start or join Ray now (False inside a Ray worker, where it is already running).
    """

    name = "ray"

    def __init__(self, address: str = "", workers: int = 1, task_cpus: float = 1.0, task_gpus: float = 1.0,
                 connect: bool = True) -> None:
        self.ray = import_ray()
        self.settings = {"address": address, "workers": workers, "task_cpus": task_cpus, "task_gpus": task_gpus}
        self._owns_ray = False
        self._remote: dict[Any, Any] = {}
        if connect and not self.ray.is_initialized():
            target = address or os.environ.get("RAY_ADDRESS") or None
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            if target is None:
                kwargs["num_cpus"] = max(1, workers)
            try:
                self.ray.init(address=target, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"executor 'ray': cannot reach a Ray cluster at {target!r} ({exc}); "
                                  "start one with `ray start --head` or fix executor.address") from None
            self._owns_ray = True
        cpus = self.ray.cluster_resources().get("CPU", 1) if self.ray.is_initialized() else 1
        self.slots = max(1, int(cpus // max(task_cpus, 1e-9)))

    def _options(self, resources: Resources) -> dict[str, float]:
        gpus = 0.0
        if resources.gpus > 0:
            has_gpus = self.ray.cluster_resources().get("GPU", 0) > 0
            if has_gpus or not resources.gpus_if_available:
                gpus = self.settings["task_gpus"] * resources.gpus
        return {"num_cpus": self.settings["task_cpus"] * resources.cpus, "num_gpus": gpus}

    def submit(self, fn: Callable[[Any], Any], item: Any, resources: Resources = ONE_CPU) -> Handle:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        ref = remote.options(**self._options(resources), max_retries=0).remote(item)
        return _RayHandle(self.ray, ref)

    def run_stage(self, run: Callable[[Any], None], ctx: Any) -> None:
        """Run one stage as a Ray task (one CPU; its chunks ask for their own resources)."""
        job = (run, dataclasses.replace(ctx, executor=None, show_progress=False), self.settings)
        self.submit(_run_stage_task, job, Resources(cpus=1.0)).result()

    def close(self) -> None:
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns_ray = False
