"""The 2-D pose network: hybrid conv-stem / ViT backbone over Triton-dispatched ops, and heads.

- :mod:`~pipeline.model.config`: frozen dataclasses (:class:`ModelConfig` and parts, presets).
- :mod:`~pipeline.model.backbone`: stem + pre-norm transformer blocks, fixed or packed batches.
- :mod:`~pipeline.model.heads`: heatmap (ViTPose simple / classic), SimCC, bottom-up AE heads.
- :mod:`~pipeline.model.packing`: native-resolution packing of crops (cu_seqlens).
- :mod:`~pipeline.model.memory`: activation and parameter memory estimate.
- :mod:`~pipeline.model.vitpose_weights`: load Hugging Face ViTPose checkpoints.
"""

from pipeline.model.backbone import Backbone
from pipeline.model.config import BackboneConfig, HeadConfig, ModelConfig, StemConfig, vit_config, vitpose_config
from pipeline.model.memory import MemoryEstimate, count_parameters, estimate_memory
from pipeline.model.packing import PackedTokens, pack, unpack
from pipeline.model.pose_model import PoseModel, build_model

__all__ = [
    "Backbone",
    "BackboneConfig",
    "HeadConfig",
    "MemoryEstimate",
    "ModelConfig",
    "PackedTokens",
    "PoseModel",
    "StemConfig",
    "build_model",
    "count_parameters",
    "estimate_memory",
    "pack",
    "unpack",
    "vit_config",
    "vitpose_config",
]
