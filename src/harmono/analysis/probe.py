"""Linear probe: how much class information stored features carry."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of a multinomial logistic regression on features."""

    train_accuracy: float
    """Accuracy on the training features."""
    test_accuracy: float
    """Accuracy on the held-out features."""


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decay: float = 1e-4,
    steps: int = 100,
) -> ProbeResult:
    """Fit a softmax regression on standardised ``train_x (N, D)`` (full-batch L-BFGS) and score it.

    Features are standardised with the training mean and std; ``weight_decay``
    is an L2 penalty on the weights.
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"expected (N, D) features of one D, got {tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    head = torch.nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(train_x), train_y) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_acc = (head(train_x).argmax(dim=1) == train_y).float().mean().item()
        test_acc = (head(test_x).argmax(dim=1) == test_y).float().mean().item()
    return ProbeResult(train_acc, test_acc)
