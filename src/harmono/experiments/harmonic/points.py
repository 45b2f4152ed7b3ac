"""The harmonic-loss paper's two 2-D toy cases (its Fig. 1).

Each case is a handful of points in the plane, one class per point, fitted
full-batch by a single bias-free head: either a harmonic head (logits
``-n log ||x - c_i||``) or a linear head (logits ``w_i . x``) with SoftMax.

- ``two_points``: ``(1, 1)`` and ``(-1, -1)``. The harmonic centers converge
  onto the points; the linear weights grow without bound.
- ``five_points``: ``(0, ±1)``, ``(±1, 0)`` and ``(0, 0)``. The harmonic head
  reaches near-zero loss with centers on the points; the linear head cannot
  fit the centre point, whose logits are all ``w_i . 0 = 0`` (probability
  1/5 whatever the weights), so its loss stays above ``log(5) / 5``.

Settings follow the official notebook: Adam, lr 1e-2, 10,000 full-batch
steps, eps 1e-6 and code exponent 1 on ``d^2``, i.e. ``n = 2`` in harmono's
convention ``p ∝ d^(-n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.data.points import TOY_CASES
from harmono.experiments.claims import Claim
from harmono.harmonic import HarmonicLinear

HEADS = ("harmonic", "linear")

LINEAR_FIVE_POINT_FLOOR = math.log(5) / 5
"""Lowest mean loss a bias-free linear head can reach on ``five_points``."""


@dataclass(frozen=True)
class ToyPointsConfig:
    """Settings of one toy-case fit (defaults: the official notebook's)."""

    steps: int = 10_000
    """Full-batch Adam steps."""
    lr: float = 1e-2
    """Adam learning rate."""
    exponent: float = 2.0
    """Harmonic exponent ``n`` in ``p ∝ d^(-n)`` (the notebook's code n = 1 on d^2)."""
    eps: float = 1e-6
    """Added to the squared distance inside the log."""
    seed: int = 0
    """Seed of the head's initialisation."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("steps",), 1)
        checks.require_positive_number("lr", self.lr)
        checks.require_positive_number("exponent", self.exponent)
        checks.require_non_negative_number("eps", self.eps)


@dataclass(frozen=True)
class ToyResult:
    """Outcome of fitting one head to one toy case."""

    case: str
    """Name of the case in ``TOY_CASES``."""
    head: str
    """``"harmonic"`` or ``"linear"``."""
    final_loss: float
    """Mean cross-entropy over the points after the last step."""
    center_distances: tuple[float, ...]
    """``||w_i - p_i||`` for each class: how far the weight row sits from its point."""
    weight_norm: float
    """Frobenius norm of the head's weight matrix."""
    weights: tuple[tuple[float, float], ...]
    """The learned weight rows (centers for the harmonic head), shape (C, 2)."""
    loss_curve: tuple[float, ...]
    """Loss at steps 0, 10, 20, ... (every tenth step)."""


def build_head(head: str, num_classes: int, config: ToyPointsConfig) -> nn.Module:
    """A bias-free 2-D head: ``HarmonicLinear`` or ``nn.Linear``."""
    if head == "harmonic":
        return HarmonicLinear(2, num_classes, exponent=config.exponent, eps=config.eps, validate=False)
    if head == "linear":
        return nn.Linear(2, num_classes, bias=False)
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")


def fit_toy_case(case: str, head: str, config: ToyPointsConfig = ToyPointsConfig()) -> ToyResult:
    """Fit one head to one toy case, full batch.

    Parameters
    ----------
    case : str
        A key of ``TOY_CASES``.
    head : {"harmonic", "linear"}
    config : ToyPointsConfig

    Returns
    -------
    ToyResult
    """
    if case not in TOY_CASES:
        raise ValueError(f"case must be one of {tuple(TOY_CASES)}, got {case!r}")
    points = torch.tensor(TOY_CASES[case])  # (C, 2)
    labels = torch.arange(points.shape[0])  # (C,)
    torch.manual_seed(config.seed)
    model = build_head(head, points.shape[0], config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    curve = []
    for step in range(config.steps):
        loss = F.cross_entropy(model(points), labels)
        if step % 10 == 0:
            curve.append(loss.item())
            if not math.isfinite(curve[-1]):
                raise ValueError(
                    f"{case}, {head} head: the loss became {curve[-1]} at step {step}; "
                    f"training diverged, try a smaller lr than {config.lr}"
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = F.cross_entropy(model(points), labels).item()
        weight = model.weight.detach()
        distances = (weight - points).norm(dim=1)
    return ToyResult(
        case=case,
        head=head,
        final_loss=final,
        center_distances=tuple(distances.tolist()),
        weight_norm=weight.norm().item(),
        weights=tuple(tuple(row) for row in weight.tolist()),
        loss_curve=tuple(curve),
    )


def run_toy_points(config: ToyPointsConfig = ToyPointsConfig(), progress: bool = True) -> list[ToyResult]:
    """Fit both heads to both toy cases; results in case-major order."""
    jobs = [(case, head) for case in TOY_CASES for head in HEADS]
    return [
        fit_toy_case(case, head, config) for case, head in tqdm(jobs, desc="toy cases", disable=not progress)
    ]


def check_toy_claims(results: list[ToyResult], tolerance: float = 1e-2) -> list[Claim]:
    """Check the paper's Fig. 1 claims on the results of :func:`run_toy_points`.

    Parameters
    ----------
    results : list of ToyResult
        Fits of both heads to both cases.
    tolerance : float
        Largest center-to-point distance that counts as "on the point".
    """
    by_key = {(r.case, r.head): r for r in results}
    harmonic = [r for r in results if r.head == "harmonic"]
    linear = [r for r in results if r.head == "linear"]
    claims = [
        Claim(
            f"harmonic centers converge to their points (every distance < {tolerance:g})",
            all(max(r.center_distances) < tolerance for r in harmonic),
        ),
        Claim(
            "the harmonic head fits five_points, centre point included (loss < 1e-4)",
            by_key["five_points", "harmonic"].final_loss < 1e-4,
        ),
        Claim(
            "linear weights grow past the points instead of converging to them",
            all(r.weight_norm > torch.tensor(TOY_CASES[r.case]).norm().item() for r in linear),
        ),
        Claim(
            f"the linear head cannot fit the centre point (five_points loss >= log(5)/5 = "
            f"{LINEAR_FIVE_POINT_FLOOR:.3f})",
            by_key["five_points", "linear"].final_loss >= LINEAR_FIVE_POINT_FLOOR - 1e-6,
        ),
    ]
    return claims
