"""Model tests run the PyTorch reference path (the Triton path is covered in tests/kernels)."""

from __future__ import annotations

import pytest

from pipeline.kernels import kernel_mode_override


@pytest.fixture(autouse=True)
def _reference_kernels():
    with kernel_mode_override("reference"):
        yield
