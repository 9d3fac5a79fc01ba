"""Backbone: packed crops equal per-image runs; checkpointing keeps gradients; configs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.config import from_mapping
from pipeline.errors import ConfigError
from pipeline.model import Backbone, BackboneConfig, ModelConfig, StemConfig, build_model, unpack, vit_config
from pipeline.model.memory import count_parameters

CROPS = [(40, 28), (23, 50), (40, 28), (64, 16)]  # (h, w), odd aspect ratios


def _tiny(**kw) -> Backbone:
    torch.manual_seed(0)
    base = dict(stem=StemConfig(channels=(8, 16)), embed_dim=32, depth=2, num_heads=2)
    return Backbone(BackboneConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize(
    "kw",
    [{}, {"mlp": "swiglu", "norm": "rmsnorm"}, {"positions": "abs", "abs_grid": (7, 10)},
     {"stem": StemConfig(kind="patch", patch_size=8), "positions": "abs", "abs_grid": (4, 5)}],
    ids=["rope", "swiglu-rms", "abs", "vit-patch"],
)
def test_packed_backbone_equals_per_image(kw):
    model = _tiny(**kw)
    torch.manual_seed(1)
    crops = [torch.randn(3, h, w) for h, w in CROPS]
    with torch.no_grad():
        packed = model.forward_packed(crops)
        maps = unpack(packed)
        assert packed.cu_seqlens.tolist()[-1] == packed.tokens.shape[0] == sum(m[0].numel() for m in maps)
        for crop, fmap in zip(crops, maps):
            torch.testing.assert_close(fmap, model(crop[None])[0], atol=1e-5, rtol=1e-5)


def test_packed_model_outputs_per_crop():
    model = build_model(ModelConfig(), apply_kernel_mode=False).eval()
    crops = [torch.randn(3, 128, 96), torch.randn(3, 72, 40)]
    with torch.no_grad():
        outs = model.forward_packed(crops)
        assert outs[0].shape == (17, 32, 24) and outs[1].shape == (17, 18, 10)
        torch.testing.assert_close(outs[1], model(crops[1][None])[0], atol=1e-5, rtol=1e-5)


def test_checkpointing_changes_no_gradient():
    model = _tiny().train()
    x = torch.randn(2, 3, 24, 20)
    grads = []
    for flag in (False, True):
        model.checkpointing = flag
        out = model(x)
        grads.append(torch.autograd.grad(out.square().sum(), list(model.parameters())))
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g1, g0, atol=1e-6, rtol=1e-5)


def test_default_model_size_and_vit_setting():
    assert 1.3e6 < count_parameters(ModelConfig()) < 1.5e6  # the hybrid of the probe
    cfg = vit_config(embed_dim=48, depth=1, num_heads=3, input_size=(48, 64))
    model = build_model(cfg, apply_kernel_mode=False)
    assert type(model.backbone.stem).__name__ == "PatchStem" and model.backbone.pos is not None
    assert model(torch.randn(1, 3, 64, 48)).shape == (1, 17, 16, 12)


def test_config_parses_from_yaml_mapping_and_validates():
    cfg = from_mapping(ModelConfig, {"backbone": {"depth": 2, "stem": {"channels": [16, 32, 64, 128]}}}, "x.yaml")
    assert cfg.backbone.stem.stride == 16 and cfg.upsample_factor == 4 and cfg.grid == (6, 8)
    with pytest.raises(ConfigError, match="multiple of"):
        replace(cfg, backbone=replace(cfg.backbone, num_heads=3))
    with pytest.raises(ConfigError, match="power of two >= 4"):
        ModelConfig(backbone=BackboneConfig(stem=StemConfig(channels=(8,))))
    with pytest.raises(ConfigError, match="unknown key 'model.head.kindd'|unknown key 'head.kindd'"):
        from_mapping(ModelConfig, {"head": {"kindd": "simcc"}}, "x.yaml", prefix="model.")
