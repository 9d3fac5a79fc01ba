"""Fused bias + activation Triton kernels against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from pipeline.kernels import bias_activation
from tests.kernels.conftest import assert_check


@pytest.mark.parametrize(
    "name", ["bias_gelu_fp32", "bias_silu_fp32", "bias_swiglu_fp32", "swiglu_no_bias_fp32", "bias_gelu_fp16"]
)
def test_triton_activation_matches_reference(op_results, name):
    assert_check(op_results, name)


def test_activation_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        bias_activation(torch.randn(2, 4), None, "relu")
    with pytest.raises(ValueError, match="even last dim"):
        bias_activation(torch.randn(2, 5), None, "swiglu")
