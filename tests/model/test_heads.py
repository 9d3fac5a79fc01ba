"""Each head's output shapes match its codec, and decode goes through the codec."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.codecs import AssociativeEmbeddingCodec, HeatmapCodec, SimCCCodec
from pipeline.model import HeadConfig, ModelConfig, build_model


def _model(**head) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(input_size=(40, 56), backbone=replace(ModelConfig().backbone, depth=1, embed_dim=40),
                      head=replace(HeadConfig(), **head))
    return build_model(cfg, apply_kernel_mode=False).eval()


@pytest.mark.parametrize("decoder", ["simple", "classic"])
def test_heatmap_head_matches_codec(decoder):
    model = _model(kind="heatmap", decoder=decoder, deconv_channels=16)
    assert isinstance(model.codec, HeatmapCodec)
    out = model(torch.randn(2, 3, 56, 40))
    w, h = model.codec.heatmap_size
    assert out.shape == (2, 17, h, w) == (2, 17, 14, 10)
    keypoints, scores = model.decode(out)
    assert keypoints.shape == (2, 17, 2) and scores.shape == (2, 17)


def test_simcc_head_matches_codec():
    model = _model(kind="simcc", token_dim=32)
    assert isinstance(model.codec, SimCCCodec)
    sx, sy = model(torch.randn(2, 3, 56, 40))
    assert sx.shape == (2, 17, model.codec.bins[0]) == (2, 17, 80)
    assert sy.shape == (2, 17, model.codec.bins[1]) == (2, 17, 112)
    keypoints, scores = model.decode((sx, sy))
    assert keypoints.shape == (2, 17, 2) and scores.shape == (2, 17)


@pytest.mark.parametrize("upsample", ["pixelshuffle", "deconv", "bilinear"])
def test_bottomup_head_matches_codec(upsample):
    model = _model(kind="bottomup", upsample=upsample, channels=16, tag_dim=2)
    assert isinstance(model.codec, AssociativeEmbeddingCodec)
    heatmaps, tags = model(torch.randn(2, 3, 56, 40))
    w, h = model.codec.heatmap_size
    assert heatmaps.shape == (2, 17, h, w) and tags.shape == (2, 17, h, w, 2)
    persons = model.decode((heatmaps, tags))
    assert len(persons) == 2 and all(p.keypoints.shape[1:] == (17, 3) for p in persons)


def test_bottomup_with_stride16_stem_upsamples_4x():
    cfg = ModelConfig(input_size=(64, 64), backbone=replace(ModelConfig().backbone, depth=1,
                      stem=replace(ModelConfig().backbone.stem, channels=(8, 16, 16, 32))),
                      head=HeadConfig(kind="bottomup", channels=8))
    model = build_model(cfg, apply_kernel_mode=False).eval()
    heatmaps, tags = model(torch.randn(1, 3, 64, 64))
    assert heatmaps.shape == (1, 17, 16, 16) and tags.shape == (1, 17, 16, 16, 1)
