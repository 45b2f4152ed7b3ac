"""How the toy MLP/transformer trains on an algorithmic task, and what a run yields.

The configurations (:class:`ToyTrainConfig`, :class:`ToyConfiguration`),
the official protocol, the embedding regulariser and the per-seed results;
:mod:`harmono.experiments.harmonic.toy_training` trains them.

Protocol (the official code's, which made the paper's numbers): AdamW,
lr 2e-3, batch 32 shuffled, weight decay 0.01 (MLP) or 0.005
(transformer), 7000 epochs (10000 for the permutation transformer), and
the embedding regulariser ``0.01 * mean_j sqrt(mean_i E_ij^2)`` (named
``"rms"``; it favours few active dimensions, which raises the EV of both
heads) on the input embedding. ``"l2"`` is the plain ``0.01 * mean E^2``.
The official code's MLPs (tied embeddings) take that penalty of a detached
tensor, so in effect they train without it (``"none"``); harmono applies
it to both architectures, as the paper's text says.
After every epoch the accuracy on the whole train and test sets is
measured with dropout off (the official code, which never puts its
transformers in eval mode, measured it with dropout on:
``ToyTrainConfig.eval_dropout`` does that, as a control). harmono draws
each seed's split with its own generator; ``ToyTrainConfig.official_draws``
replays the official code's draws instead, as a control.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from harmono.core import checks
from harmono.data.toy import PAPER_DATA_SIZE
from harmono.models.toy import ARCHITECTURES, ToyModelConfig

EMBEDDING_REGULARISERS = ("rms", "l2", "none")
PAPER_SEEDS = tuple(int(s) for s in np.linspace(0, 1000, 20))
"""The official 20 seeds: 0, 52, 105, ..., 1000."""
GROKKING_THRESHOLD, GROKKING_WINDOW = 0.9, 20
RECORDED_WHEN_SET = {"eval_dropout": False, "official_draws": False}
"""Training fields added after results were committed, with the default a record leaves out."""


def train_settings(recorded: dict) -> dict:
    """A record's ``"train"`` with the fields it may leave out (``RECORDED_WHEN_SET``) at their default."""
    return {**RECORDED_WHEN_SET, **recorded}


def paper_epochs(task: str, arch: str) -> int:
    """Epochs of the official runs: 7000, or 10000 for the permutation transformer."""
    return 10_000 if (task, arch) == ("permutation", "transformer") else 7_000


def paper_weight_decay(arch: str) -> float:
    """AdamW weight decay of the official runs: 0.01 (MLP) or 0.005 (transformer)."""
    return 0.005 if checks.require_choice("arch", arch, ARCHITECTURES) == "transformer" else 0.01


@dataclass(frozen=True)
class ToyTrainConfig:
    """How to train one configuration (defaults: the official protocol, see the module notes)."""

    epochs: int = 7_000
    """Passes over the training set."""
    batch_size: int = 32
    """Examples per step (per seed)."""
    lr: float = 2e-3
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay, on every parameter."""
    embedding_reg: str = "rms"
    """``"rms"`` (the official ``mean_j sqrt(mean_i E_ij^2)``), ``"l2"`` (``mean E^2``) or ``"none"``."""
    reg_strength: float = 0.01
    """Weight of the embedding regulariser."""
    train_fraction: float = 0.8
    """Share of the drawn examples used for training."""
    data_size: int = PAPER_DATA_SIZE
    """Examples drawn per task (capped at the unique ones without ``paper_sampling``)."""
    paper_sampling: bool = False
    """Draw examples with replacement as the official code does (test examples leak into training)."""
    eval_dropout: bool = False
    """Measure the accuracies with the training dropout on, as the official code does (transformers)."""
    official_draws: bool = False
    """Train and test each seed on the split the official code draws for it (with ``paper_sampling``):
    for the paper's seeds, the paper's own splits (:mod:`harmono.data.official_toy_draws`)."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("epochs", "batch_size", "data_size"), 1)
        checks.require_positive_number("lr", self.lr)
        checks.require_non_negative_number("weight_decay", self.weight_decay)
        checks.require_choice("embedding_reg", self.embedding_reg, EMBEDDING_REGULARISERS)
        checks.require_non_negative_number("reg_strength", self.reg_strength)
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.official_draws and not self.paper_sampling:
            raise ValueError(
                "official_draws replays the official code's draws, which are with replacement: "
                "it needs paper_sampling=True, got paper_sampling=False"
            )

    def record(self) -> dict:
        """The JSON form: every field, except those of ``RECORDED_WHEN_SET`` left at their default.

        So a record written before such a field existed still equals the
        record of the same settings now.
        """
        return {
            name: value
            for name, value in asdict(self).items()
            if name not in RECORDED_WHEN_SET or value != RECORDED_WHEN_SET[name]
        }


@dataclass(frozen=True)
class SeedResult:
    """What one seed's model learned."""

    seed: int
    """The seed of split, initialisation, shuffling and dropout."""
    ev_top2: float
    """Top-2 PCA explained variance of the analysed embedding rows."""
    ev_ratios: tuple[float, ...]
    """All explained-variance ratios, largest first."""
    train_epoch: int | None
    """First epoch of 20 in a row with train accuracy > 0.9 (None: never)."""
    test_epoch: int | None
    """First epoch of 20 in a row with test accuracy > 0.9 (None: never)."""
    final_train_acc: float
    """Train accuracy after the last epoch."""
    final_test_acc: float
    """Test accuracy after the last epoch."""
    leakage: float
    """Share of test examples that also occur in training (0 for the leak-free split)."""


@dataclass(frozen=True)
class ToyRunResult:
    """All seeds of one configuration."""

    task: str
    """Task name."""
    model: ToyModelConfig
    """Architecture and head."""
    train: ToyTrainConfig
    """Training settings."""
    seeds: tuple[SeedResult, ...]
    """One result per seed, in order."""
    seconds: float
    """Wall time of the training."""
    train_acc: np.ndarray
    """``(S, E)`` train accuracy after each epoch."""
    test_acc: np.ndarray
    """``(S, E)`` test accuracy after each epoch."""
    embedding: np.ndarray
    """``(S, V, D)`` final input embeddings (the centers of the harmonic MLP)."""
    output_centers: np.ndarray
    """``(S, V, D)`` final output class vectors (the embedding when tied)."""

    def record(self) -> dict:
        """The JSON-ready summary: configs, wall time and per-seed results (no arrays)."""
        return {
            "task": self.task,
            "model": asdict(self.model),
            "train": self.train.record(),
            "seconds": self.seconds,
            "seeds": [asdict(s) for s in self.seeds],
        }


@dataclass(frozen=True)
class ToyConfiguration:
    """One configuration of a stack: its model, its training and its seeds."""

    model: ToyModelConfig
    """Architecture, head and exponent."""
    train: ToyTrainConfig
    """Training settings."""
    seeds: tuple[int, ...] = PAPER_SEEDS
    """One model per seed."""

    def __post_init__(self) -> None:
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        object.__setattr__(self, "seeds", seeds)

    def record(self) -> dict:
        """The JSON form: ``{"model": ..., "train": ..., "seeds": [...]}``."""
        return {"model": asdict(self.model), "train": self.train.record(), "seeds": list(self.seeds)}


def embedding_penalty(embedding: torch.Tensor, kind: str) -> torch.Tensor:
    """The regulariser per seed: ``embedding (S, V, D)`` -> ``(S,)`` (see ``EMBEDDING_REGULARISERS``)."""
    if kind == "rms":
        return embedding.square().mean(1).sqrt().mean(-1)
    if kind == "l2":
        return embedding.square().mean((1, 2))
    return embedding.new_zeros(embedding.shape[0])
