"""The paper's formulas, written naively in float64: the reference for the tests.

No log-space trick, no expansion of the squared distance, no chunking: the
distances come from explicit differences and HarMax is ``d^-n / sum d^-n``.
"""

from __future__ import annotations

import torch


def naive_distances(x: torch.Tensor, centers: torch.Tensor, distance: str, eps: float) -> torch.Tensor:
    """``d_i`` of the paper: ``(..., D)``, ``(C, D)`` -> ``(..., C)`` float64."""
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
    weights = naive_distances(x, centers, distance, eps).pow(-n)
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
    log_p = naive_harmax(x, centers, n, distance, eps).log()
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    nll = -log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    per_row = ((1 - label_smoothing) * nll - label_smoothing * log_p.mean(-1)) * valid
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / valid.sum()
