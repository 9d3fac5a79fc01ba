"""The shipped checkpoints load with weights_only=True and reach their reported held-out metrics.

The check set is the first samples of each card's held-out stream (samples are a pure function of
(seed, index), so these are exactly members of the set the card was measured on); the tolerance
covers the smaller sample.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pipeline.model.config import ModelConfig
from pipeline.training.config import load_train_config
from pipeline.training.data import build_heldout
from pipeline.training.evaluate import evaluate
from pipeline.weights import WEIGHTS_DIR, available, load_default, read_card

SHIPPED = available()
CHECK_SIZE = {"topdown": 120, "bottomup": 48}


def test_cards_are_complete():
    assert {"topdown_heatmap", "bottomup_ae"} <= set(SHIPPED)
    for name in SHIPPED:
        card = read_card(name)
        for key in ("model", "metrics", "training", "heldout", "input"):
            assert key in card, (name, key)
        assert card["training"]["steps"] > 0 and card["training"]["images_per_s"] > 0
        assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size <= 20 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_weights_only(name):
    ck = torch.load(WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
    assert set(ck) == {"model", "config"}
    model = load_default(name)
    assert not model.training
    assert isinstance(model.config, ModelConfig)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_reaches_reported_metrics(name, tmp_path):
    card = read_card(name)
    sections = load_train_config(WEIGHTS_DIR.parents[1] / "configs" / card["training"]["config"])
    model = load_default(name)
    kind = "bottomup" if model.config.head.kind == "bottomup" else "topdown"
    data = replace(sections.data, heldout_seed=card["heldout"]["seed"], heldout_people=tuple(card["heldout"]["people"]))
    heldout = build_heldout(model.config, data, size=CHECK_SIZE[kind], workers=1, cache=False)
    torch.set_num_threads(1)
    metrics = evaluate(model, heldout, flip_test=False)
    reported = card["metrics"]
    if kind == "topdown":
        assert metrics["pck"] >= reported["pck"] - 0.05, (metrics, reported)
        assert metrics["mean_px"] <= reported["mean_px"] * 1.35 + 0.5, (metrics, reported)
    else:
        assert metrics["recall"] >= reported["recall"] - 0.06, (metrics, reported)
        assert metrics["precision"] >= reported["precision"] - 0.08, (metrics, reported)
