"""Pose codecs: label geometry of the 2D pose stage, kept apart from the network.

A codec is a pure class with ``encode`` (keypoints -> training targets) and ``decode`` (network
output -> keypoints); it knows label geometry, not networks. Heads own a codec and only call
``decode``. Shapes use N instances, K joints, [w, h] input pixels and [W, H] heatmap pixels;
see each module's docstring.

- :class:`HeatmapCodec`: Gaussian heatmaps, UDP transform, DARK / quarter-offset refinement.
- :class:`SimCCCodec`: 1-D x / y classification with split ratio k, KL targets, 1-D DARK.
- :class:`AssociativeEmbeddingCodec`: bottom-up heatmaps + tags, HigherHRNet grouping;
  :class:`TagTracker` keeps person ids over frames.
"""

from pipeline.codecs._common import CodecError
from pipeline.codecs.associative_embedding import (
    AEPersons,
    AETargets,
    AssociativeEmbeddingCodec,
    TagTracker,
    max_pool_peaks,
    merge_flip_test,
)
from pipeline.codecs.heatmap import HeatmapCodec, HeatmapTargets, flip_heatmaps
from pipeline.codecs.simcc import SimCCCodec, SimCCTargets, simcc_kl_loss

CODECS = {
    "heatmap": HeatmapCodec,
    "simcc": SimCCCodec,
    "associative_embedding": AssociativeEmbeddingCodec,
}
"""Codec classes by config name (an explicit mapping, no registry)."""

__all__ = [
    "CODECS",
    "AEPersons",
    "AETargets",
    "AssociativeEmbeddingCodec",
    "CodecError",
    "HeatmapCodec",
    "HeatmapTargets",
    "SimCCCodec",
    "SimCCTargets",
    "TagTracker",
    "flip_heatmaps",
    "max_pool_peaks",
    "merge_flip_test",
    "simcc_kl_loss",
]
