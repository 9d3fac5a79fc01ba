"""The bottom-up head's stem skips: shapes, zero start (fine-tuning a skip-less model), gradients reach the stem."""

import dataclasses

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model import build_model
from pipeline.model.config import BackboneConfig, HeadConfig, ModelConfig, StemConfig


def _config(skips: bool) -> ModelConfig:
    backbone = BackboneConfig(stem=StemConfig(kind="conv", channels=(8, 16, 16, 16)), embed_dim=32, num_heads=2,
                              depth=1)
    return ModelConfig(input_size=(64, 48), backbone=backbone,
                       head=HeadConfig(kind="bottomup", channels=16, tag_dim=1, skips=skips), kernels="reference")


def test_skip_head_starts_as_the_skipless_head_and_learns_from_the_stem():
    torch.manual_seed(0)
    plain = build_model(_config(False)).eval()
    skip = build_model(_config(True)).eval()
    result = skip.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("head.skip") or k.startswith("head.fuse")
                                              for k in result.missing_keys)
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        a, b = plain(x), skip(x)
    assert a[0].shape == (2, 17, 12, 16) and a[1].shape == (2, 17, 12, 16, 1)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    skip.train()
    heat, tags = skip(x)
    (heat.square().mean() + tags.square().mean()).backward()
    assert skip.head.skip4.weight.grad.abs().sum() > 0  # the zero start still gets gradients
    assert skip.head.skip8.weight.grad.abs().sum() > 0


def test_skip_head_packed_crops_equal_batched_forward():
    torch.manual_seed(1)
    model = build_model(_config(True)).eval()
    for m in (model.head.skip4, model.head.skip8):
        torch.nn.init.normal_(m.weight, std=0.1)
    crops = [torch.randn(3, 48, 64), torch.randn(3, 32, 48), torch.randn(3, 48, 64)]
    with torch.no_grad():
        packed = model.forward_packed(crops)
        whole = model(torch.stack([crops[0], crops[2]]))
    torch.testing.assert_close(packed[0][0], whole[0][0])
    torch.testing.assert_close(packed[2][1], whole[1][1])
    assert packed[1][0].shape == (17, 8, 12)


def test_skips_need_a_conv_stem_and_the_bottomup_head():
    with pytest.raises(ConfigError, match="skips"):
        dataclasses.replace(_config(True), head=HeadConfig(kind="heatmap", skips=True))
