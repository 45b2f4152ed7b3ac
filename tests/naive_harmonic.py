"""The paper's formulas in float64, written independently of harmono: the test reference.

Distances come from explicit differences (no expansion of the square, no
chunking). HarMax is ``d^-n / sum d^-n``, evaluated as ``(d / d_min)^-n``
so that no power overflows. The loss ``-log p_t`` is evaluated as
``log1p(sum_{j != t} exp(z_j - z_t))`` when ``t`` is the most likely class
(and as ``(z_a - z_t) + log1p(sum_{j != a} exp(z_j - z_a))`` otherwise), so
that a loss of 1e-20 and its gradient are still exact to many digits; the
textbook ``logsumexp(z) - z_t`` rounds ``p_t - 1`` to zero there.
"""

from __future__ import annotations

import torch


def naive_distances(x: torch.Tensor, centers: torch.Tensor, distance: str, eps: float) -> torch.Tensor:
    """``d_i`` of the paper (``eps`` added to ``d^2``, or to ``1 - cos``): ``(..., C)`` float64."""
    x, centers = x.double(), centers.double()
    if distance == "euclidean":
        diff = x.unsqueeze(-2) - centers  # (..., C, D)
        return (diff.square().sum(-1) + eps).sqrt()
    cos = (x.unsqueeze(-2) * centers).sum(-1) / (x.norm(dim=-1, keepdim=True) * centers.norm(dim=-1))
    return 1 - cos + eps


def naive_harmax(
    x: torch.Tensor, centers: torch.Tensor, n: float, distance: str = "euclidean", eps: float = 0.0
) -> torch.Tensor:
    """``p_i = d_i^-n / sum_j d_j^-n`` in float64."""
    d = naive_distances(x, centers, distance, eps)
    weights = (d / d.amin(-1, keepdim=True)).pow(-n)
    return weights / weights.sum(-1, keepdim=True)


def naive_harmonic_loss(
    x: torch.Tensor,
    centers: torch.Tensor,
    target: torch.Tensor,
    n: float,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    distance: str = "euclidean",
    eps: float = 0.0,
) -> torch.Tensor:
    """``-(1-s) log p_target - s mean_j log p_j``, reduced as ``F.cross_entropy`` does."""
    z = -n * naive_distances(x, centers, distance, eps).log()  # (..., C)
    z_max, best = z.max(-1, keepdim=True)
    others = (z - z_max).exp().scatter(-1, best, 0.0).sum(-1, keepdim=True)
    lse = z_max + others.log1p()  # log sum_j exp z_j
    valid = target != ignore_index
    safe = torch.where(valid, target, 0).unsqueeze(-1)
    z_target = z.gather(-1, safe)
    # rows whose target is the most likely class: no z_max path, so no 1 - 1 + tiny in autograd
    to_target = (z - z_target).clamp(max=0).exp().scatter(-1, safe, 0.0).sum(-1, keepdim=True)
    nll = torch.where(best == safe, to_target.log1p(), (z_max - z_target) + others.log1p()).squeeze(-1)
    smooth = (lse - z.mean(-1, keepdim=True)).squeeze(-1)
    per_row = ((1 - label_smoothing) * nll + label_smoothing * smooth) * valid
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / valid.sum()
