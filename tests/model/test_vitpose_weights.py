"""Hugging Face ViTPose weights load exactly into the backbone + heatmap head.

Needs ``transformers`` (a test-only dependency) to build a VitPoseForPoseEstimation with random
weights locally; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

from pipeline.errors import ConfigError
from pipeline.model.vitpose_weights import convert_vitpose_state_dict, load_vitpose, vitpose_model_config


def _random_vitpose(simple: bool, depth: int = 2, out_index: int = 2) -> VitPoseForPoseEstimation:
    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=(64, 48), patch_size=(16, 16), hidden_size=48,
                                     num_hidden_layers=depth, num_attention_heads=3, out_indices=[out_index])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=simple,
                                                   num_labels=17)).eval()
    with torch.no_grad():  # every weight random (HF zero-inits biases and sets norms to 1)
        for p in model.parameters():
            p.normal_(0.0, 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("simple", [True, False], ids=["simple", "classic"])
def test_vitpose_checkpoint_loads_exactly(tmp_path, simple):
    hf = _random_vitpose(simple)
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors, as on the Hub
    model = load_vitpose(tmp_path, kernels="reference")
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        want = hf(x).heatmaps
        got = model(x)
    assert got.shape == want.shape == (2, 17, 16, 12)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert model.codec.heatmap_size == (12, 16)


def test_vitpose_bin_checkpoint_and_truncated_out_index(tmp_path):
    """pytorch_model.bin via torch.load(weights_only=True); out_indices < depth drops later layers."""
    hf = _random_vitpose(simple=True, depth=3, out_index=2)
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    model = load_vitpose(tmp_path, kernels="reference")
    assert model.config.backbone.depth == 2
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).heatmaps, atol=1e-4, rtol=0)


def test_vitpose_mapping_errors(tmp_path):
    hf = _random_vitpose(simple=True)
    config = vitpose_model_config(hf.config.to_dict())
    state = hf.state_dict()
    state.pop("backbone.layernorm.weight")
    with pytest.raises(ConfigError, match="missing key 'backbone.layernorm.weight'"):
        convert_vitpose_state_dict(state, config)
    moe = hf.config.to_dict()
    moe["backbone_config"]["num_experts"] = 6
    with pytest.raises(ConfigError, match="Mixture-of-Experts"):
        vitpose_model_config(moe)
    with pytest.raises(ConfigError, match="no config.json"):
        load_vitpose(tmp_path)
