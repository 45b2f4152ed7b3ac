"""Linear probe: how much class information stored features carry."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harmono.core.checks import require_class_targets

logger = logging.getLogger("harmono")
PROVENANCE_KEYS = ("encoder", "weights", "output", "image_size", "class_names")
"""Metadata two stores must share for a probe trained on one to be tested on the other."""


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
    is an L2 penalty on the weights. ``train_y (N,)`` and ``test_y (M,)`` are
    int64 class indices in ``[0, num_classes)``.
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"expected (N, D) features of one D, got {tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    if len(train_x) < 2 or len(test_x) < 1:
        raise ValueError(
            f"expected >= 2 training and >= 1 test samples, got {len(train_x)} and {len(test_x)}"
        )
    require_class_targets(train_y, (len(train_x),), num_classes, name="train_y")
    require_class_targets(test_y, (len(test_x),), num_classes, name="test_y")
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


def probe_stores(train, test) -> ProbeResult:
    """``linear_probe`` trained on one ``FeatureStore`` and tested on another.

    The stores must hold the same kind of features (``PROVENANCE_KEYS`` of
    their metadata); an incomplete store is probed as it is, with a warning.
    """
    differ = {
        key: (train.metadata.get(key), test.metadata.get(key))
        for key in PROVENANCE_KEYS
        if train.metadata.get(key) != test.metadata.get(key)
    }
    if differ or train.dim != test.dim:
        raise ValueError(
            f"expected a train and a test store of the same features, got {train.directory} and "
            f"{test.directory} differing in {differ or {'dim': (train.dim, test.dim)}}"
        )
    for store in (train, test):
        if len(store) == 0:
            raise ValueError(f"{store.directory}: expected a store with features, got 0 rows")
        if not store.complete:
            logger.warning(
                "%s is not complete (an extraction was interrupted); probing its %d rows",
                store.directory,
                len(store),
            )
    (train_batch,), (test_batch,) = train.view().batches(len(train)), test.view().batches(len(test))
    return linear_probe(
        train_batch.features,
        train_batch.labels,
        test_batch.features,
        test_batch.labels,
        len(train.metadata["class_names"]),
    )
