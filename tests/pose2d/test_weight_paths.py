"""pose2d's weight settings: empty = the shipped default, a shipped name, or a path next to the config."""

from __future__ import annotations

from pathlib import Path

from pipeline.pose2d.build import default_weights
from pipeline.stage import StageContext
from stages.pose2d import Pose2dParams, weight_paths


def _paths(tmp_path: Path, **params) -> dict[str, Path]:
    return weight_paths(StageContext(tmp_path / "session", Pose2dParams(**params), None, tmp_path, show_progress=False))


def test_empty_means_the_shipped_defaults(tmp_path):
    got = _paths(tmp_path, backend="topdown")
    assert got == {"bottomup": default_weights("bottomup_ae"), "topdown": default_weights("topdown_heatmap")}


def test_a_shipped_name_or_a_path(tmp_path):
    got = _paths(tmp_path, backend="topdown", topdown_weights="topdown_simcc", bottomup_weights="mine/bu.pt")
    assert got["topdown"] == default_weights("topdown_simcc")
    assert got["bottomup"] == (tmp_path / "mine" / "bu.pt").resolve()
