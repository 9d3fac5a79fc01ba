"""Training losses of the three heads (torch; the codecs make the targets)."""

from __future__ import annotations

import torch

from pipeline.codecs.simcc import simcc_kl_loss

__all__ = ["ae_tag_loss", "heatmap_loss", "simcc_loss"]


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE: per-joint mean squared error over the map, weighted by ``weights`` (N, K), mean over N x K.

    Args:
        pred, target: (N, K, H, W). weights: (N, K) or None (all maps count, as bottom-up).
    """
    per_joint = (pred.float() - target).pow(2).mean(dim=(-2, -1))
    if weights is None:
        return per_joint.mean()
    return (per_joint * weights).sum() / weights.numel()


def ae_tag_loss(tags: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                push_margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Associative-embedding pull and push losses, averaged over images.

    Args:
        tags: (N, K, H, W, L) tag maps. indices: (N, P, K) flat heatmap index y * W + x per joint,
            -1 where unused. weights: (N, P, K), 0 where unused.
        push_margin: 0: Newell et al.'s push, exp(-||m_i - m_j||^2); > 0: CornerNet's hinge,
            max(0, margin - ||m_i - m_j||), whose gradient does not vanish when the tags of all
            persons collapse to one value (exp's does, and short runs get stuck there).

    Returns:
        (pull, push): pull = mean over persons of the mean squared distance of their joints' tags
        to the person's mean tag m; push = the mean over ordered person pairs of the push term.
    """
    n, k = tags.shape[:2]
    flat = tags.float().reshape(n, k, -1, tags.shape[-1])  # (N, K, HW, L)
    pulls, pushes = [], []
    for b in range(n):
        used = (indices[b] >= 0) & (weights[b] > 0)  # (P, K)
        persons = used.any(-1)
        if not persons.any():
            continue
        idx, ok = indices[b][persons], used[persons]  # (P', K)
        joint = torch.arange(k, device=tags.device).expand_as(idx)
        t = flat[b, joint.clamp(min=0), idx.clamp(min=0)]  # (P', K, L)
        okf = ok.float().unsqueeze(-1)
        count = okf.sum(1).clamp(min=1)
        mean = (t * okf).sum(1) / count  # (P', L)
        pulls.append((((t - mean[:, None]) ** 2).sum(-1) * ok.float()).sum() / count.sum())
        p = mean.shape[0]
        if p > 1:
            diff = (mean[:, None] - mean[None]).pow(2).sum(-1)
            off = ~torch.eye(p, dtype=torch.bool, device=tags.device)
            if push_margin > 0:
                pushes.append(torch.relu(push_margin - torch.sqrt(diff + 1e-8))[off].mean())
            else:
                pushes.append(torch.exp(-diff)[off].mean())
    zero = tags.sum() * 0.0
    pull = torch.stack(pulls).mean() if pulls else zero
    push = torch.stack(pushes).mean() if pushes else zero
    return pull, push


def simcc_loss(pred_x: torch.Tensor, pred_y: torch.Tensor, target_x: torch.Tensor, target_y: torch.Tensor,
               weights: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    """The SimCC KL loss (the codec's :func:`~pipeline.codecs.simcc.simcc_kl_loss`)."""
    return simcc_kl_loss(pred_x.float(), pred_y.float(), target_x, target_y, weights, beta=beta)
