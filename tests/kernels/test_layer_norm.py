"""Fused LayerNorm / RMSNorm Triton kernels against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from pipeline.kernels import layer_norm
from tests.kernels.conftest import assert_check


@pytest.mark.parametrize("name", ["layer_norm_fp32", "layer_norm_fp16", "rms_norm_fp32"])
def test_triton_norm_matches_reference(op_results, name):
    assert_check(op_results, name)


def test_layer_norm_checks_parameter_shapes():
    with pytest.raises(ValueError, match="weight and bias must be"):
        layer_norm(torch.randn(3, 5), torch.ones(4), torch.zeros(4))
