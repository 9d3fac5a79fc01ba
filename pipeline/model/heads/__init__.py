"""Pose heads; each owns its codec and only calls the codec's ``decode``."""

from pipeline.model.heads.bottomup import BottomUpHead
from pipeline.model.heads.heatmap import HeatmapHead
from pipeline.model.heads.simcc import SimCCHead

__all__ = ["BottomUpHead", "HeatmapHead", "SimCCHead"]
