"""Which implementation of the hot ops runs: the Triton kernels or the PyTorch references.

The mode comes from, in order of precedence:

1. :func:`set_kernel_mode` (``configure_kernels(model_config)`` calls it with the config's
   ``kernels`` field when that is not ``"auto"``), or the :func:`kernel_mode_override` context;
2. the environment variable ``POSECAP_KERNELS``;
3. ``"auto"``.

Modes:

- ``"auto"``: Triton on CUDA tensors when Triton is importable, the reference elsewhere.
- ``"triton"``: always the Triton kernels; tensors must be on CUDA, or ``TRITON_INTERPRET=1``
  must be set (the interpreter runs the kernels on CPU tensors, slowly: for tests).
- ``"reference"``: always the PyTorch references (any device).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from pipeline.errors import ConfigError
from pipeline.kernels._launch import HAS_TRITON, interpreting

__all__ = [
    "ENV_VAR",
    "MODES",
    "configure_kernels",
    "kernel_mode",
    "kernel_mode_override",
    "set_kernel_mode",
    "triton_available",
    "use_triton",
]

ENV_VAR = "POSECAP_KERNELS"
MODES = ("auto", "triton", "reference")

_override: str | None = None


def _check(mode: Any, where: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"{where}: kernel mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def triton_available() -> bool:
    """True when ``import triton`` works in this environment."""
    return HAS_TRITON


def set_kernel_mode(mode: str | None) -> None:
    """Force a mode for this process (None clears it, so ``POSECAP_KERNELS`` applies again)."""
    global _override
    _override = None if mode is None else _check(mode, "set_kernel_mode")


def configure_kernels(config: Any) -> str:
    """Apply a model config's ``kernels`` field (or a mode string) and return the active mode.

    ``"auto"`` in the config leaves ``POSECAP_KERNELS`` in charge; ``"triton"`` or
    ``"reference"`` force that path for the process.
    """
    mode = config if isinstance(config, str) else getattr(config, "kernels", "auto")
    _check(mode, "model.kernels")
    set_kernel_mode(None if mode == "auto" else mode)
    return kernel_mode()


@contextlib.contextmanager
def kernel_mode_override(mode: str) -> Iterator[None]:
    """Run a block with ``mode`` forced, restoring the previous setting afterwards."""
    global _override
    previous = _override
    _override = _check(mode, "kernel_mode_override")
    try:
        yield
    finally:
        _override = previous


def kernel_mode() -> str:
    """The active mode: the override, else ``POSECAP_KERNELS``, else ``"auto"``."""
    if _override is not None:
        return _override
    return _check(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", f"environment {ENV_VAR}")


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether an op on these tensors takes the Triton path under the active mode.

    Raises:
        ConfigError: mode ``"triton"`` is forced but Triton is missing, or the tensors are not
            on CUDA and ``TRITON_INTERPRET=1`` is not set.
    """
    mode = kernel_mode()
    if mode == "reference":
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if mode == "triton":
        if not HAS_TRITON:
            raise ConfigError(f"{ENV_VAR}=triton but triton is not importable; install it or use 'reference'")
        if not on_cuda and not interpreting():
            raise ConfigError(
                f"{ENV_VAR}=triton needs CUDA tensors (or TRITON_INTERPRET=1 to run the kernels on the CPU "
                "interpreter); use 'auto' or 'reference' on this device"
            )
        return True
    return HAS_TRITON and on_cuda
