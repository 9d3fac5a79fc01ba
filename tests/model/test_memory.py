"""The memory estimate against the tensors autograd actually saves (fp32, CPU reference path)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.model import ModelConfig, build_model, estimate_memory
from pipeline.model.memory import count_parameters


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of distinct non-parameter storages saved for backward during one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params and s.nbytes() > 0:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
        sum(o.sum() for o in out).backward() if isinstance(out, tuple) else out.sum().backward()
    return sum(seen.values())


@pytest.mark.parametrize("kind", ["heatmap", "bottomup"])
def test_activation_estimate_within_25_percent(kind):
    cfg = ModelConfig(head=replace(ModelConfig().head, kind=kind), autocast=False)
    model = build_model(cfg, apply_kernel_mode=False).train()
    x = torch.randn(4, 3, 128, 96)
    measured = _saved_bytes(model, x)
    est = estimate_memory(cfg, batch_size=4, bf16=False)
    ratio = est.activation_bytes / measured
    assert 0.75 < ratio < 1.25, (est.activation_bytes, measured)


def test_estimate_parts():
    cfg = ModelConfig()
    est = estimate_memory(cfg, batch_size=64)
    n = count_parameters(cfg)
    assert est.parameters == n
    assert est.grad_bytes == 4 * n and est.optimizer_bytes == 8 * n
    ckpt = estimate_memory(cfg, batch_size=64, checkpointing=True)
    assert ckpt.activation_bytes < est.activation_bytes
    assert estimate_memory(cfg, 64, training=False).activation_bytes < est.activation_bytes
    assert estimate_memory(cfg, 128).activation_bytes > 1.9 * est.activation_bytes
    assert "total" in est.summary()
