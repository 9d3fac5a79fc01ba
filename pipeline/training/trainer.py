"""The training loop: AdamW (no decay on norms, biases, positions), warm-up + cosine, clipping, EMA, exact resume.

Per step: batch ``step`` from :class:`~pipeline.training.data.BatchStream` (made in DataLoader
workers), forward (bf16 autocast on CUDA, inside the model), the head's loss, backward,
gradient clipping, AdamW, scheduler, EMA update. Packed variable-size batches (top-down heatmap
head, ``data.packed_sizes``) go through ``model.forward_packed``.

Every ``eval_every`` steps the EMA weights are scored on the held-out set; the best are exported
to ``out_dir/best.pt`` (fp16 ``{"model", "config"}``) with ``best.yaml``. Every
``checkpoint_every`` steps (and at the end) ``out_dir/last.pt`` holds everything needed to resume
exactly. ``out_dir/log.jsonl`` records losses, images/s and metrics.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.artifacts import to_plain, write_yaml
from pipeline.errors import ArtifactError
from pipeline.model import build_model
from pipeline.training.checkpoint import export_weights, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from pipeline.training.config import TrainSections
from pipeline.training.data import BatchStream, HeldOut, build_heldout
from pipeline.training.evaluate import evaluate
from pipeline.training.losses import ae_tag_loss, heatmap_loss, simcc_loss
from pipeline.training.pool import Pool, load_or_build_pool

__all__ = ["Trainer", "headline_metric", "lr_lambda", "param_groups"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices / conv kernels; none on norms, biases, position params."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if p.ndim <= 1 or leaf == "bias" or any(k in name.lower() for k in ("pos", "rope")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up from ~0 to 1 over ``warmup`` steps, then cosine to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def headline_metric(metrics: dict[str, Any]) -> float:
    """The number that decides the best checkpoint: PCK (top-down) or recall x precision (bottom-up)."""
    if "pck" in metrics:
        return float(metrics["pck"])
    return float(metrics["recall"]) * float(metrics["precision"]) ** 0.25


class Trainer:
    """One training run of ``sections`` (see the module docstring).

    Args:
        sections: the parsed config.
        out_dir: overrides ``train.out_dir``.
        progress: show a tqdm bar.
        pool, heldout: pre-built data (tests); default: built / loaded from the cache.
    """

    def __init__(self, sections: TrainSections, out_dir: str | Path | None = None, progress: bool = True,
                 pool: Pool | None = None, heldout: HeldOut | None = None) -> None:
        self.cfg = sections
        tr = sections.train
        torch.set_num_threads(tr.threads)
        self.out_dir = Path(out_dir if out_dir is not None else tr.out_dir)
        self.progress = progress
        dev = tr.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else
                                   ("cpu" if dev == "auto" else dev))
        torch.manual_seed(tr.seed)
        self.model = build_model(sections.model)
        if tr.init_from:
            self.init_weights(tr.init_from, tr.init_prefix)
        self.model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval() if tr.ema_decay > 0 else None
        if self.ema is not None:
            for p in self.ema.parameters():
                p.requires_grad_(False)
        o = tr.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.model, o.weight_decay), lr=o.lr, betas=tuple(o.betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, o.warmup_steps, tr.steps, o.min_lr_ratio))
        self.step = 0
        self.elapsed_s = 0.0
        self.images_seen = 0
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self._pool, self._heldout = pool, heldout

    def init_weights(self, path: str | Path, prefix: str) -> int:
        """Copy the weights named ``prefix*`` of an exported checkpoint into the model; returns how many.

        Transformer blocks the checkpoint does not have (a model deepened from a shallower one)
        start as the identity: their attention and MLP output projections are zero, so the deeper
        model computes exactly what the checkpoint computed until training moves them.
        """
        ck = load_checkpoint(path)
        source = ck.get("ema") or ck["model"] if isinstance(ck, dict) else None
        if not isinstance(source, dict):
            raise ArtifactError(f"{path}: no 'model' state dict to initialise from")
        own = self.model.state_dict()
        picked = {k: v.to(own[k].dtype) for k, v in source.items() if k.startswith(prefix) and k in own}
        bad = [k for k, v in picked.items() if v.shape != own[k].shape]
        if bad or not picked:
            raise ArtifactError(f"{path}: cannot initialise from it: {len(picked)} weights named {prefix}*, "
                                f"shape mismatch in {bad[:3]}")
        self.model.load_state_dict(picked, strict=False)
        for name, block in self.model.backbone.blocks.named_children():
            if not any(k.startswith(f"backbone.blocks.{name}.") for k in source):
                for layer in (block.attn.proj, block.mlp.fc2):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        return len(picked)

    # ------------------------------------------------------------------ data

    @property
    def pool(self) -> Pool | None:
        d = self.cfg.data
        if self._pool is None and d.source == "pool":
            self._pool = load_or_build_pool(d.cache_dir, d.scene, d.pool_size, d.pool_seed, d.render_workers,
                                            progress=self.progress)
        return self._pool

    @property
    def heldout(self) -> HeldOut:
        if self._heldout is None:
            self._heldout = build_heldout(self.cfg.model, self.cfg.data)
        return self._heldout

    def stream(self) -> BatchStream:
        return BatchStream(self.cfg.model, self.cfg.data, self.cfg.train.batch_size, self.cfg.train.seed, self.pool)

    # ------------------------------------------------------------------ step

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The head's loss on one batch (tensors already on the device)."""
        tr, kind = self.cfg.train, self.cfg.model.head.kind
        if batch["packed"]:
            outs = self.model.forward_packed(batch["images"])
            losses = [heatmap_loss(o[None], t[None], w[None])
                      for o, t, w in zip(outs, batch["heatmaps"], batch["weights"])]
            loss = torch.stack(losses).mean() * tr.loss_heatmap_weight
            return loss, {"heatmap": float(loss.detach())}
        out = self.model(batch["images"])
        if kind == "heatmap":
            loss = heatmap_loss(out, batch["heatmaps"], batch["weights"]) * tr.loss_heatmap_weight
            return loss, {"heatmap": float(loss.detach())}
        if kind == "simcc":
            loss = simcc_loss(out[0], out[1], batch["x_targets"], batch["y_targets"], batch["weights"],
                              tr.loss_simcc_beta)
            return loss, {"simcc": float(loss.detach())}
        heatmaps, tags = out
        hm = heatmap_loss(heatmaps, batch["heatmaps"]) * tr.loss_heatmap_weight
        pull, push = ae_tag_loss(tags, batch["tag_indices"], batch["weights"], tr.loss_tag_push_margin)
        loss = hm + tr.loss_tag_weight * (pull + push)
        return loss, {"heatmap": float(hm.detach()), "pull": float(pull.detach()), "push": float(push.detach())}

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        def move(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.to(self.device, non_blocking=True)
            if isinstance(v, list):
                return [move(x) for x in v]
            return v
        return {k: move(v) for k, v in batch.items()}

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        self.model.train()
        batch = self._to_device(batch)
        loss, parts = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.train.optim.grad_clip
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), clip)) if clip > 0 else float("nan")
        self.optimizer.step()
        self.scheduler.step()
        self._update_ema()
        self.step += 1
        n = len(batch["images"])
        self.images_seen += n
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, **parts}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        tr = self.cfg.train
        decay = min(tr.ema_decay, (1 + self.step) / (10 + self.step)) if tr.ema_warmup else tr.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "images_seen": self.images_seen,
            "rng": get_rng_state(),
            "best": json.dumps(self.best),
            "history": json.dumps(self.history),
            "model_config": to_plain(asdict(self.cfg.model)),
        }

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self.out_dir / "last.pt"
        save_checkpoint(path, self.state())
        return path

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint written by :meth:`save` (default ``out_dir/last.pt``)."""
        ck = load_checkpoint(path if path is not None else self.out_dir / "last.pt")
        self.model.load_state_dict(ck["model"])
        if self.ema is not None and ck["ema"]:
            self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.step, self.elapsed_s, self.images_seen = int(ck["step"]), float(ck["elapsed_s"]), int(ck["images_seen"])
        self.best = json.loads(ck["best"])
        self.history = json.loads(ck["history"])
        set_rng_state(ck["rng"])

    # ------------------------------------------------------------------ eval / export

    def evaluate(self) -> dict[str, Any]:
        metrics = evaluate(self.eval_model, self.heldout, flip_test=self.cfg.train.flip_test)
        record = {"step": self.step, "elapsed_s": round(self.elapsed_s, 1), **metrics}
        self.history.append(record)
        self._log({"eval": record})
        if self.best is None or headline_metric(metrics) > headline_metric(self.best["metrics"]):
            self.best = {"step": self.step, "elapsed_s": round(self.elapsed_s, 1), "metrics": metrics}
            size = export_weights(self.out_dir / "best.pt", self.eval_model.state_dict(), self.cfg.model)
            write_yaml(self.out_dir / "best.yaml", {**self.best, "bytes": size,
                                                    "images_per_s": self.images_per_s}, "train_best@1")
        return metrics

    @property
    def images_per_s(self) -> float:
        return round(self.images_seen / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0

    def _log(self, record: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(to_plain(record)) + "\n")

    # ------------------------------------------------------------------ loop

    def run(self, steps: int | None = None) -> dict[str, Any]:
        """Train until step ``steps`` (default ``train.steps``) or ``max_time_s``; returns the last metrics."""
        tr = self.cfg.train
        stop = tr.steps if steps is None else min(steps, tr.steps)
        stream = self.stream()
        workers = self.cfg.data.loader_workers
        loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=range(self.step, stop),
                                             num_workers=workers, prefetch_factor=4 if workers else None,
                                             persistent_workers=False)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=stop, initial=self.step, desc=f"train {self.cfg.model.head.kind}", unit="step",
                       dynamic_ncols=True, mininterval=5.0)
        metrics: dict[str, Any] = {}
        smooth = None
        last = time.perf_counter()
        for batch in loader:
            out = self.train_step(batch)
            now = time.perf_counter()
            self.elapsed_s += now - last
            last = now
            smooth = out["loss"] if smooth is None else 0.95 * smooth + 0.05 * out["loss"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{smooth:.3g}", img_s=f"{self.images_per_s:.1f}", refresh=False)
            if self.step % 20 == 0:
                self._log({"step": self.step, "lr": self.scheduler.get_last_lr()[0],
                           "images_per_s": self.images_per_s, "elapsed_s": round(self.elapsed_s, 1),
                           **{k: round(v, 6) for k, v in out.items()}})
            timed_out = tr.max_time_s > 0 and self.elapsed_s >= tr.max_time_s
            if (tr.eval_every and self.step % tr.eval_every == 0) or self.step == stop or timed_out:
                metrics = self.evaluate()
                if bar is not None:
                    bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
                last = time.perf_counter()  # evaluation time is not training time
            if self.step % tr.checkpoint_every == 0 or self.step == stop or timed_out:
                self.save()
                last = time.perf_counter()
            if timed_out:
                break
        if bar is not None:
            bar.close()
        return metrics
