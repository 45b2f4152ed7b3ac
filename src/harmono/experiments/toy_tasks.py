"""Train the toy MLP/transformer on an algorithmic task, many seeds at once.

One call trains every seed of a configuration (task x architecture x head)
in one :class:`~harmono.models.toy.BatchedToyModel`. Seed ``s`` gets its own
split (``split_task(..., seed=s)``), initialisation, shuffling and dropout
masks, each from its own generator, so the stack trains exactly the models
that the seeds would train one by one (the suite checks this).

Protocol (the official code's, which made the paper's numbers): AdamW,
lr 2e-3, batch 32 shuffled, weight decay 0.01 (MLP) or 0.005
(transformer), 7000 epochs (10000 for the permutation transformer), and
the embedding regulariser ``0.01 * mean_j sqrt(mean_i E_ij^2)`` (named
``"rms"``; it favours few active dimensions, which raises the EV of both
heads) on the input embedding. ``"l2"`` is the plain ``0.01 * mean E^2``.
After every epoch the accuracy on the whole train and test sets is
measured with dropout off.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harmono import _checks
from harmono.analysis.toy_metrics import explained_variance_ratios, grokking_epoch
from harmono.data.toy import PAPER_DATA_SIZE, ToyTask, split_task
from harmono.models.toy import ARCHITECTURES, BatchedToyModel, ToyModelConfig

EMBEDDING_REGULARISERS = ("rms", "l2", "none")
PAPER_SEEDS = tuple(int(s) for s in np.linspace(0, 1000, 20))
"""The official 20 seeds: 0, 52, 105, ..., 1000."""
GROKKING_THRESHOLD, GROKKING_WINDOW = 0.9, 20


def paper_epochs(task: str, arch: str) -> int:
    """Epochs of the official runs: 7000, or 10000 for the permutation transformer."""
    return 10_000 if (task, arch) == ("permutation", "transformer") else 7_000


def paper_weight_decay(arch: str) -> float:
    """AdamW weight decay of the official runs: 0.01 (MLP) or 0.005 (transformer)."""
    return 0.005 if _checks.require_choice("arch", arch, ARCHITECTURES) == "transformer" else 0.01


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

    def __post_init__(self) -> None:
        _checks.require_at_least(self, ("epochs", "batch_size", "data_size"), 1)
        _checks.require_positive_number("lr", self.lr)
        _checks.require_non_negative_number("weight_decay", self.weight_decay)
        _checks.require_choice("embedding_reg", self.embedding_reg, EMBEDDING_REGULARISERS)
        _checks.require_non_negative_number("reg_strength", self.reg_strength)
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")


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
            "train": asdict(self.train),
            "seconds": self.seconds,
            "seeds": [asdict(s) for s in self.seeds],
        }


def embedding_penalty(embedding: torch.Tensor, kind: str) -> torch.Tensor:
    """The regulariser per seed: ``embedding (S, V, D)`` -> ``(S,)`` (see ``EMBEDDING_REGULARISERS``)."""
    if kind == "rms":
        return embedding.square().mean(1).sqrt().mean(-1)
    if kind == "l2":
        return embedding.square().mean((1, 2))
    return embedding.new_zeros(embedding.shape[0])


def _training_generator(seed: int) -> torch.Generator:
    """Seed ``seed``'s stream for shuffling and dropout, apart from its initialisation stream."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]))


@torch.no_grad()
def _accuracy(model: BatchedToyModel, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(S,)`` accuracy of each seed's model on its own examples, dropout off."""
    return (model(inputs).argmax(-1) == labels).double().mean(1)


def train_toy_seeds(
    task: ToyTask,
    model_config: ToyModelConfig,
    train_config: ToyTrainConfig,
    seeds: tuple[int, ...] | list[int] = PAPER_SEEDS,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> ToyRunResult:
    """Train one model per seed, all at once; see the module notes.

    Parameters
    ----------
    task : ToyTask
        The task; ``model_config.vocab_size`` and ``seq_len`` must match it.
    model_config : ToyModelConfig
        Architecture and head.
    train_config : ToyTrainConfig
        Protocol (:func:`paper_epochs` and :func:`paper_weight_decay` give the
        official epochs and weight decay per task and architecture).
    seeds : sequence of int
        One model per seed.
    progress : bool
        Show a tqdm bar over epochs.
    device : str or torch.device
        Where to train. Initialisation, shuffling and dropout masks are
        drawn on the CPU, so a seed trains the same model on any device (to
        float tolerance).

    Returns
    -------
    ToyRunResult
        Per-seed EV, grokking epochs and accuracies, the accuracy curves and
        the final embeddings.
    """
    if (model_config.vocab_size, model_config.seq_len) != (task.vocab_size, task.seq_len):
        raise ValueError(
            f"model_config expects vocab_size {model_config.vocab_size} and seq_len {model_config.seq_len}, "
            f"task {task.name!r} has {task.vocab_size} and {task.seq_len}"
        )
    seeds = tuple(int(s) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    cfg = train_config
    splits = [
        split_task(task, cfg.train_fraction, s, data_size=cfg.data_size, paper_sampling=cfg.paper_sampling)
        for s in seeds
    ]
    train_x, train_y, test_x, test_y = (
        torch.from_numpy(np.stack([getattr(s, name) for s in splits])).to(device)
        for name in ("train_inputs", "train_labels", "test_inputs", "test_labels")
    )
    num_seeds, n_train = train_y.shape
    steps = -(-n_train // cfg.batch_size)
    seed_index = torch.arange(num_seeds, device=device)[:, None]

    model = BatchedToyModel(model_config, seeds).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    generators = [_training_generator(s) for s in seeds]
    train_acc = torch.empty(num_seeds, cfg.epochs, dtype=torch.float64, device=device)
    test_acc = torch.empty_like(train_acc)
    start = time.perf_counter()
    for epoch in tqdm(
        range(cfg.epochs), desc=f"{task.name} {model_config.arch} {model_config.head}", disable=not progress
    ):
        order = torch.stack([torch.randperm(n_train, generator=g) for g in generators]).to(device)
        masks = model.dropout_masks(generators, steps, cfg.batch_size)
        masks = None if masks is None else masks.to(device)
        for step in range(steps):
            rows = order[:, step * cfg.batch_size : (step + 1) * cfg.batch_size]
            logits = model(
                train_x[seed_index, rows], None if masks is None else masks[:, step, : rows.shape[1]]
            )
            loss = F.cross_entropy(
                logits.flatten(0, 1), train_y[seed_index, rows].flatten(), reduction="none"
            )
            total = loss.view(num_seeds, -1).mean(1).sum()
            if cfg.embedding_reg != "none":
                total = total + cfg.reg_strength * embedding_penalty(model.embedding, cfg.embedding_reg).sum()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        train_acc[:, epoch] = _accuracy(model, train_x, train_y)
        test_acc[:, epoch] = _accuracy(model, test_x, test_y)
    seconds = time.perf_counter() - start

    train_acc, test_acc = train_acc.cpu(), test_acc.cpu()
    embedding = model.embedding.detach().cpu()
    ratios = explained_variance_ratios(embedding[:, list(task.analysed_tokens)].double().numpy())
    results = tuple(
        SeedResult(
            seed=seed,
            ev_top2=float(ratios[k, :2].sum()),
            ev_ratios=tuple(float(r) for r in ratios[k]),
            train_epoch=grokking_epoch(train_acc[k].numpy(), GROKKING_THRESHOLD, GROKKING_WINDOW),
            test_epoch=grokking_epoch(test_acc[k].numpy(), GROKKING_THRESHOLD, GROKKING_WINDOW),
            final_train_acc=float(train_acc[k, -1]),
            final_test_acc=float(test_acc[k, -1]),
            leakage=splits[k].leakage,
        )
        for k, seed in enumerate(seeds)
    )
    return ToyRunResult(
        task=task.name,
        model=model_config,
        train=cfg,
        seeds=results,
        seconds=seconds,
        train_acc=train_acc.numpy(),
        test_acc=test_acc.numpy(),
        embedding=embedding.numpy(),
        output_centers=model.output_centers.detach().cpu().clone().numpy(),
    )
