"""Low-rank adapters (LoRA, Hu et al. 2021) on chosen linear layers of a frozen network.

``y = W x + b + (alpha / r) B A x`` with ``A (r, in)`` initialised as
``nn.Linear`` initialises a weight and ``B (out, r)`` at zero, so an adapted
network starts equal to the original. The MonoLoss CLIP-ViT-B/32 recipe puts
adapters of rank 16, alpha 32 on ``q_proj`` and ``v_proj``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harmono.core import checks


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update.

    Parameters
    ----------
    base : nn.Linear
        The layer to adapt; its parameters are frozen.
    rank : int
        ``r``.
    alpha : float
        Scale numerator: the update is multiplied by ``alpha / rank``.

    Shapes
    ------
    ``x (..., in_features)`` -> ``(..., out_features)``.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank = checks.require_positive_int("rank", rank)
        self.scale = checks.require_positive_number("alpha", alpha) / rank
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x) + scale * x A^T B^T``."""
        return self.base(x) + self.scale * (x @ self.lora_a.T @ self.lora_b.T)


def apply_lora(model: nn.Module, targets: tuple[str, ...], rank: int, alpha: float) -> list[str]:
    """Freeze ``model`` and wrap each ``nn.Linear`` whose name ends in one of ``targets`` in ``LoRALinear``.

    Returns the names of the adapted layers; a ``ValueError`` when none matches.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    chosen = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
    ]
    if not chosen:
        raise ValueError(
            f"expected linear layers named {targets} for LoRA, found none in {type(model).__name__}"
        )
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    return chosen
