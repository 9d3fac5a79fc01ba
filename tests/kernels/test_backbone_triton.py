"""The backbone on the Triton path (interpreter): packing, reference agreement, checkpointing."""

from __future__ import annotations

import pytest

from tests.kernels.conftest import assert_check

pytestmark = pytest.mark.slow


def test_packed_backbone_equals_per_image_and_reference(model_results):
    assert_check(model_results, "packed_backbone_triton")


def test_checkpointing_changes_no_gradient_triton(model_results):
    assert_check(model_results, "checkpointing_triton")
