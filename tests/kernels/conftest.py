"""Runs the Triton-vs-reference checks of ``kernel_checks.py`` in a child process.

``TRITON_INTERPRET=1`` only takes effect if it is set before the kernels are decorated, i.e.
before ``pipeline.kernels`` is first imported; in one pytest process that may already have
happened (another test imported the model). A child process started with the variable set is
immune to import order. The checks run in two batches, so a failure report names each check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernels import kernel_checks

ROOT = Path(__file__).resolve().parents[2]
SLOW_CHECKS = ("packed_backbone_triton", "checkpointing_triton")


def _run(names: list[str]) -> dict[str, dict[str, object]]:
    env = dict(os.environ, TRITON_INTERPRET="1", POSECAP_KERNELS="triton")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.kernels.kernel_checks", *names],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"kernel checks crashed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def op_results() -> dict[str, dict[str, object]]:
    """Results of the per-op checks (attention, norms, activations)."""
    return _run([n for n in kernel_checks.CHECKS if n not in SLOW_CHECKS])


@pytest.fixture(scope="session")
def model_results() -> dict[str, dict[str, object]]:
    """Results of the whole-backbone checks on the Triton path."""
    return _run(list(SLOW_CHECKS))


def assert_check(results: dict[str, dict[str, object]], name: str) -> None:
    """Fail with the child's traceback if check ``name`` failed."""
    assert name in results, f"check {name} did not run; got {sorted(results)}"
    entry = results[name]
    assert entry["ok"], f"{name} failed:\n{entry['error']}"
