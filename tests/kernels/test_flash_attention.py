"""FlashAttention Triton kernels (TRITON_INTERPRET=1, CPU) against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from pipeline.kernels import flash_attention_varlen
from pipeline.kernels.flash_attention import flash_attention_reference, flash_attention_varlen_reference
from pipeline.model.packing import cu_seqlens_of
from tests.kernels.conftest import assert_check


@pytest.mark.parametrize(
    "name",
    [
        "attention_fixed_fp32",
        "attention_fixed_cross_fp32",
        "attention_fixed_fp16",
        "attention_varlen_fp32",
        "attention_varlen_cross_fp32",
        "attention_varlen_equals_each_alone",
    ],
)
def test_triton_attention_matches_reference(op_results, name):
    assert_check(op_results, name)


def test_reference_varlen_is_per_sequence_softmax():
    """The varlen reference equals softmax(q k^T / sqrt(D)) v computed for each sequence alone."""
    torch.manual_seed(0)
    lengths = [5, 5, 2, 9]
    q, k, v = (torch.randn(sum(lengths), 2, 8) for _ in range(3))
    cu = cu_seqlens_of(lengths)
    out = flash_attention_varlen_reference(q, k, v, cu, cu)
    bounds = cu.tolist()
    for s in range(len(lengths)):
        a, b = bounds[s], bounds[s + 1]
        scores = torch.einsum("qhd,khd->hqk", q[a:b], k[a:b]) / 8**0.5
        want = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v[a:b])
        torch.testing.assert_close(out[a:b], want, atol=1e-5, rtol=1e-5)
    fixed = flash_attention_reference(q[None, :5], k[None, :5], v[None, :5])
    torch.testing.assert_close(out[:5], fixed[0], atol=1e-6, rtol=1e-6)


def test_varlen_rejects_mismatched_cu_seqlens():
    q = torch.randn(6, 1, 8)
    with pytest.raises(ValueError, match="cu_seqlens"):
        flash_attention_varlen(q, q, q, cu_seqlens_of([6]), cu_seqlens_of([3, 3]), 6, 3)
