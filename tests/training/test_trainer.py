"""The trainer: loss and held-out error go down, resume is exact, every head and packed batches train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.data import build_heldout
from pipeline.training.trainer import Trainer, lr_lambda, param_groups
from tests.training.conftest import tiny_sections


def _losses(trainer: Trainer, steps: int) -> list[float]:
    stream = trainer.stream()
    return [trainer.train_step(stream[trainer.step])["loss"] for _ in range(steps)]


def test_short_run_lowers_loss_and_heldout_error(tmp_path, topdown_pool):
    sections = tiny_sections(tmp_path, steps=60)
    heldout = build_heldout(sections.model, sections.data, size=24, workers=1, cache=False)
    trainer = Trainer(sections, progress=False, pool=topdown_pool, heldout=heldout)
    before = trainer.evaluate()
    stream = trainer.stream()
    with torch.no_grad():
        initial_loss = float(trainer.loss(trainer._to_device(stream[0]))[0])
    trainer.run()
    after = trainer.history[-1]
    with torch.no_grad():
        final_loss = float(trainer.loss(trainer._to_device(stream[0]))[0])
    assert trainer.step == 60 and after["step"] == 60
    assert final_loss < 0.7 * initial_loss
    assert after["mean_px"] < 0.8 * before["mean_px"], (before, after)
    assert after["pck"] >= before["pck"]
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_continues_exactly(tmp_path, topdown_pool, workers):
    sections = tiny_sections(tmp_path, steps=6, loader_workers=workers)
    straight = Trainer(sections, progress=False, pool=topdown_pool, heldout=None)
    expected = _losses(straight, 4)

    first = Trainer(sections, out_dir=tmp_path / "a", progress=False, pool=topdown_pool)
    assert _losses(first, 2) == expected[:2]
    path = first.save()
    resumed = Trainer(sections, out_dir=tmp_path / "a", progress=False, pool=topdown_pool)
    resumed.resume(path)
    assert resumed.step == 2
    assert _losses(resumed, 2) == expected[2:]  # bit-exact: same batches, weights, optimizer, schedule, EMA
    for (name, a), b in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), name


def test_run_loop_resume_matches_uninterrupted(tmp_path, topdown_pool):
    sections = tiny_sections(tmp_path, steps=4)
    full = Trainer(sections, out_dir=tmp_path / "full", progress=False, pool=topdown_pool)
    full._heldout = build_heldout(sections.model, sections.data, size=8, workers=1, cache=False)
    full.run()
    part = Trainer(sections, out_dir=tmp_path / "part", progress=False, pool=topdown_pool, heldout=full._heldout)
    part.run(steps=2)
    part.save()
    again = Trainer(sections, out_dir=tmp_path / "part", progress=False, pool=topdown_pool, heldout=full._heldout)
    again.resume()
    again.run()
    for (name, a), b in zip(full.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert again.step == 4


def test_checkpoint_is_weights_only_loadable(tmp_path, topdown_pool):
    trainer = Trainer(tiny_sections(tmp_path, steps=2), progress=False, pool=topdown_pool)
    _losses(trainer, 1)
    ck = torch.load(trainer.save(), map_location="cpu", weights_only=True)
    assert ck["step"] == 1 and isinstance(ck["rng"]["torch"], torch.Tensor)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1


@pytest.mark.parametrize("head", ["simcc", "bottomup"])
def test_other_heads_train(tmp_path, head, topdown_pool, bottomup_pool):
    sections = tiny_sections(tmp_path, head=head, steps=3)
    trainer = Trainer(sections, progress=False, pool=bottomup_pool if head == "bottomup" else topdown_pool)
    losses = _losses(trainer, 3)
    assert all(np.isfinite(losses))
    if head == "bottomup":
        out = trainer.train_step(trainer.stream()[3])
        assert out["pull"] >= 0 and 0 <= out["push"] <= sections.train.loss_tag_push_margin


def test_packed_variable_size_batches(tmp_path, topdown_pool):
    sections = tiny_sections(tmp_path, steps=3, packed_sizes=((32, 48), (48, 64), (32, 32)))
    trainer = Trainer(sections, progress=False, pool=topdown_pool)
    batch = trainer.stream()[0]
    assert batch["packed"] and len({tuple(t.shape) for t in batch["images"]}) > 1
    assert all(h.shape[-2:] == (im.shape[-2] // 4, im.shape[-1] // 4)
               for h, im in zip(batch["heatmaps"], batch["images"]))
    losses = _losses(trainer, 3)
    assert all(np.isfinite(losses))


def test_param_groups_and_schedule(tmp_path):
    trainer = Trainer(tiny_sections(tmp_path), progress=False, pool=None)
    groups = param_groups(trainer.model, 0.05)
    no_decay = {id(p) for p in groups[1]["params"]}
    for name, p in trainer.model.named_parameters():
        expect = p.ndim <= 1 or name.endswith("bias") or "pos" in name
        assert (id(p) in no_decay) == expect, name
    assert lr_lambda(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_lambda(55, 10, 100, 0.0) == pytest.approx(0.5)


def test_init_from_exported_backbone(tmp_path, topdown_pool):
    from pipeline.training.checkpoint import export_weights

    source = Trainer(tiny_sections(tmp_path, steps=2), progress=False, pool=topdown_pool)
    _losses(source, 1)
    path = tmp_path / "src.pt"
    export_weights(path, source.model.state_dict(), source.cfg.model, dtype=torch.float32)
    sections = tiny_sections(tmp_path, head="bottomup", steps=2)
    sections = type(sections)(sections.model, sections.data,
                              type(sections.train)(**{**sections.train.__dict__, "init_from": str(path)}), None)
    target = Trainer(sections, progress=False, pool=None)
    for name, value in target.model.state_dict().items():
        if name.startswith("backbone."):
            assert torch.equal(value, source.model.state_dict()[name]), name


def test_init_from_shallower_model_starts_as_identity(tmp_path, topdown_pool):
    """Blocks the checkpoint lacks start as the identity: the deeper model's outputs equal the source's."""
    from dataclasses import replace

    from pipeline.training.checkpoint import export_weights

    source = Trainer(tiny_sections(tmp_path, steps=2), progress=False, pool=topdown_pool)
    _losses(source, 2)
    path = tmp_path / "src.pt"
    export_weights(path, source.model.state_dict(), source.cfg.model, dtype=torch.float32)
    sections = tiny_sections(tmp_path, steps=2)
    deeper = replace(sections.model, backbone=replace(sections.model.backbone, depth=3))
    train = replace(sections.train, init_from=str(path), init_prefix="")
    target = Trainer(type(sections)(deeper, sections.data, train, None), progress=False, pool=topdown_pool)
    assert len(target.model.backbone.blocks) == 3
    x = torch.randn(2, 3, 48, 32)
    source.model.eval()
    target.model.eval()
    with torch.no_grad():
        assert torch.allclose(target.model(x), source.model(x), atol=1e-6)
    new = target.model.backbone.blocks[2]
    assert not new.attn.proj.weight.any() and not new.mlp.fc2.weight.any()
    assert new.attn.qkv.weight.any()  # the rest keeps its random init, so training can move it
    _losses(target, 2)
    assert new.attn.proj.weight.any()
