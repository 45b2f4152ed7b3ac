"""Train the toy MLP/transformer on an algorithmic task, many seeds and configurations at once.

:func:`train_toy_configs` trains several configurations of one task and
architecture (heads, exponents, samplings, train fractions, learning rates),
every seed of each, in one :class:`~harmono.models.toy_stack.BatchedToyModel`.
Seed ``s`` of a configuration gets its own split (``split_task(...,
seed=s)``, or the official code's draw with ``official_draws``),
initialisation, shuffling and dropout masks, each from its own generator,
and its own AdamW state (:class:`StackedAdamW`); a model whose epoch has
fewer batches than another's sits out the extra steps. So the
stack trains exactly the models that each configuration, or each seed,
would train alone (the tests check both). :func:`train_toy_seeds` is the
one-configuration case.

Protocol: see :mod:`harmono.experiments.harmonic.toy_tasks`. After every epoch the
accuracy on the whole train and test sets is measured with dropout off, or
on (``ToyTrainConfig.eval_dropout``, the official code's way) with masks
from a third generator per seed, so that training itself is unchanged.
Training runs with denormal floats flushed to zero (the setting is restored
afterwards): a guard, as x86 CPUs are many times slower on denormals (a
square root over a tensor of them, measured: 11x) and values below 1e-38
change nothing here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save
from tqdm.auto import tqdm

from harmono.analysis.toy_metrics import explained_variance_ratios, grokking_epoch
from harmono.core.io import read_safetensors, write_atomically
from harmono.data.official_toy_draws import official_task, official_toy_split
from harmono.data.toy import ToySplit, ToyTask, split_task
from harmono.experiments.harmonic.stacked_adamw import StackedAdamW
from harmono.experiments.harmonic.toy_batches import EvaluationSet, StackBatches
from harmono.experiments.harmonic.toy_tasks import (
    GROKKING_THRESHOLD,
    GROKKING_WINDOW,
    PAPER_SEEDS,
    SeedResult,
    ToyConfiguration,
    ToyRunResult,
    ToyTrainConfig,
)
from harmono.models.toy import ToyModelConfig
from harmono.models.toy_stack import BatchedToyModel

STACK_LAYOUT = "members sorted by steps per epoch, longest first"
"""How a checkpoint's rows are ordered (part of its spec: a checkpoint of another layout is refused)."""
STACK_SHARED_TRAINING = ("epochs", "batch_size", "eval_dropout")
"""Training fields every configuration of one stack shares."""


def _check_stack(task: ToyTask, configurations: Sequence[ToyConfiguration]) -> None:
    if not configurations:
        raise ValueError("expected at least one configuration, got none")
    first = configurations[0]
    for index, configuration in enumerate(configurations):
        model, train = configuration.model, configuration.train
        if (model.vocab_size, model.seq_len) != (task.vocab_size, task.seq_len):
            raise ValueError(
                f"model_config expects vocab_size {model.vocab_size} and seq_len {model.seq_len}, "
                f"task {task.name!r} has {task.vocab_size} and {task.seq_len}"
            )
        if train.eval_dropout and (model.arch != "transformer" or model.dropout == 0.0):
            raise ValueError(
                f"eval_dropout needs a transformer with dropout; configuration {index} has arch "
                f"{model.arch!r} and dropout {model.dropout:g}"
            )
        for name in STACK_SHARED_TRAINING:
            if getattr(train, name) != getattr(first.train, name):
                raise ValueError(
                    f"configurations of one stack must share {name}: configuration 0 has "
                    f"{getattr(first.train, name)}, configuration {index} has {getattr(train, name)}"
                )


def stack_task(task: ToyTask, configurations: Sequence[ToyConfiguration]) -> ToyTask:
    """The examples a stack's splits index: ``task``, or :func:`official_task` when a member draws from it.

    The official task holds ``task``'s examples first, in their order, so
    harmono's splits index it as they index ``task``.
    """
    return official_task(task.name) if any(c.train.official_draws for c in configurations) else task


def stack_layout(
    task: ToyTask, configurations: Sequence[ToyConfiguration]
) -> tuple[list[tuple[ToyConfiguration, int]], list[ToySplit], list[int]]:
    """The stack's rows (``STACK_LAYOUT``): ``(members, splits, rows)``, the first two in stack order.

    A member is ``(configuration, seed)``, configurations in order and each
    seed in order; the stack sorts them by steps per epoch, longest first
    (stably). ``rows[r]`` is the member (in that first order) on row ``r``.
    A split's ids index :func:`stack_task`'s examples.
    """
    members = [(c, seed) for c in configurations for seed in c.seeds]
    splits = [_split(task, c.train, seed) for c, seed in members]
    batch_size = configurations[0].train.batch_size
    steps = [-(-len(split.train_ids) // batch_size) for split in splits]
    rows = sorted(range(len(members)), key=lambda k: -steps[k])
    return [members[k] for k in rows], [splits[k] for k in rows], rows


def _split(task: ToyTask, train: ToyTrainConfig, seed: int) -> ToySplit:
    if train.official_draws:
        return official_toy_split(task.name, seed, train.train_fraction, train.data_size)
    return split_task(
        task, train.train_fraction, seed, data_size=train.data_size, paper_sampling=train.paper_sampling
    )


def configuration_rows(configurations: Sequence[ToyConfiguration], rows: Sequence[int]) -> list[list[int]]:
    """The stack rows of each configuration, in its seed order, from :func:`stack_layout`'s ``rows``."""
    stack_row = {member: row for row, member in enumerate(rows)}
    result, first = [], 0
    for configuration in configurations:
        result.append([stack_row[k] for k in range(first, first + len(configuration.seeds))])
        first += len(configuration.seeds)
    return result


def _checkpoint_spec(task: ToyTask, configurations: Sequence[ToyConfiguration]) -> str:
    record = {
        "task": task.name,
        "configurations": [c.record() for c in configurations],
        "layout": STACK_LAYOUT,
    }
    return json.dumps(record, sort_keys=True)


def _save_checkpoint(path: Path, spec: str, epoch: int, state: dict[str, torch.Tensor]) -> None:
    blob = save(
        {k: v.detach().cpu().contiguous() for k, v in state.items()}, {"spec": spec, "epoch": str(epoch)}
    )
    write_atomically(path, lambda handle: handle.write(blob))


def _load_checkpoint(path: Path, spec: str) -> tuple[int, dict[str, torch.Tensor]] | None:
    """``(epochs done, tensors)`` of a checkpoint of this very stack, or ``None`` when there is none."""
    if not path.is_file():
        return None
    try:
        state, metadata = read_safetensors(path)
    except ValueError as error:
        raise ValueError(
            f"{path}: not a readable toy-stack checkpoint ({error}); delete it to start over"
        ) from error
    if metadata.get("spec") != spec:
        raise ValueError(f"{path} is a checkpoint of another stack; delete it or use another folder")
    return int(metadata["epoch"]), state


def _restore(
    state: dict[str, torch.Tensor],
    model: BatchedToyModel,
    optimizer: StackedAdamW,
    generators: list[torch.Generator],
    curves: tuple[torch.Tensor, torch.Tensor],
) -> float:
    """Put a checkpoint's parameters, AdamW state, generator states and curves back; its seconds."""
    with torch.no_grad():
        model.flat.copy_(state["flat"])
    optimizer.load_state_tensors(state)
    for generator, generator_state in zip(generators, state["generators"], strict=True):
        generator.set_state(generator_state.clone())
    for curve, name in zip(curves, ("train_acc", "test_acc"), strict=True):
        curve[:, : state[name].shape[1]] = state[name]
    return float(state["seconds"])


def train_toy_configs(
    task: ToyTask,
    configurations: Sequence[ToyConfiguration],
    progress: bool = True,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 250,
) -> list[ToyRunResult]:
    """Train every seed of every configuration at once; see the module notes.

    Parameters
    ----------
    task : ToyTask
        The task; every ``model.vocab_size`` and ``seq_len`` must match it.
    configurations : sequence of ToyConfiguration
        Models of one architecture and shape (they may differ in head,
        exponent, ``eps``) and training settings that share ``epochs`` and
        ``batch_size`` (they may differ in everything else: learning rate,
        weight decay, regulariser, train fraction, data size, sampling).
    progress : bool
        Show a tqdm bar over epochs.
    device : str or torch.device
        Where to train. Initialisation, splits, shuffling and dropout masks
        are drawn on the CPU, so a seed trains the same model on any device
        (to float tolerance).
    checkpoint : str or Path, optional
        A file to save the whole state to every ``checkpoint_every`` epochs
        (atomically) and to resume from: a killed run continues from its
        last checkpoint to the result it would have reached. Refused when
        it holds another stack.
    checkpoint_every : int
        Epochs between checkpoints.

    Returns
    -------
    list of ToyRunResult
        One per configuration, in order: per-seed EV, grokking epochs and
        accuracies, the accuracy curves and the final embeddings.
    """
    _check_stack(task, configurations)
    device = torch.device(device)
    members, splits, rows = stack_layout(task, configurations)
    trains = [c.train for c, _ in members]
    epochs = trains[0].epochs
    examples = stack_task(task, configurations)
    inputs = torch.tensor(examples.inputs, device=device)
    labels = torch.tensor(examples.labels, device=device)
    seeds = [seed for _, seed in members]
    batches = StackBatches(splits, trains[0].batch_size, seeds, device)
    evaluation = EvaluationSet(splits, device, seeds if trains[0].eval_dropout else None)
    generators = batches.generators + (evaluation.generators or [])

    def per_model(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(t, name)) for t in trains], dtype=torch.float64)

    model = BatchedToyModel([c.model for c, _ in members], seeds).to(device)
    optimizer = StackedAdamW(model.flat, per_model("lr"), per_model("weight_decay"))
    reg_weights = {
        kind: torch.tensor(
            [t.reg_strength if t.embedding_reg == kind else 0.0 for t in trains], device=device
        )
        for kind in ("rms", "l2")
    }
    reg_weights = {kind: weight for kind, weight in reg_weights.items() if bool(weight.any())}
    train_acc = torch.zeros(len(members), epochs, dtype=torch.float64)
    test_acc = torch.zeros_like(train_acc)

    path = None if checkpoint is None else Path(checkpoint)
    spec = _checkpoint_spec(task, configurations)
    first_epoch, elapsed = 0, 0.0
    restored = None if path is None else _load_checkpoint(path, spec)
    if restored is not None:
        first_epoch, state = restored
        elapsed = _restore(state, model, optimizer, generators, (train_acc, test_acc))

    start = time.perf_counter()
    flushing = torch.set_flush_denormal(True)
    try:
        for epoch in tqdm(
            range(first_epoch, epochs),
            desc=f"{task.name} {model.config.arch} x{len(configurations)}",
            initial=first_epoch,
            total=epochs,
            disable=not progress,
        ):
            batches.train_epoch(model, optimizer, reg_weights, inputs, labels)
            train_acc[:, epoch], test_acc[:, epoch] = (
                a.cpu() for a in evaluation.accuracy(model, inputs, labels)
            )
            done = epoch + 1
            if path is not None and (done % checkpoint_every == 0 or done == epochs):
                state = {
                    "flat": model.flat,
                    **optimizer.state_tensors(),
                    "generators": torch.stack([g.get_state() for g in generators]),
                    "train_acc": train_acc[:, :done],
                    "test_acc": test_acc[:, :done],
                    "seconds": torch.tensor(elapsed + time.perf_counter() - start),
                }
                _save_checkpoint(path, spec, done, state)
    finally:
        if flushing:
            torch.set_flush_denormal(False)
    seconds = elapsed + time.perf_counter() - start
    rows_of = configuration_rows(configurations, rows)
    return _results(task, configurations, model, splits, train_acc, test_acc, seconds, rows_of)


def _results(
    task: ToyTask,
    configurations: Sequence[ToyConfiguration],
    model: BatchedToyModel,
    splits: Sequence[ToySplit],
    train_acc: torch.Tensor,
    test_acc: torch.Tensor,
    seconds: float,
    rows_of: list[list[int]],
) -> list[ToyRunResult]:
    """Cut the stack back into one result per configuration (wall time shared by model count).

    ``rows_of`` is :func:`configuration_rows`; ``splits`` are in stack order.
    """
    embedding = model.embedding.detach().cpu()
    centers = model.output_centers.detach().cpu()
    ratios = explained_variance_ratios(embedding[:, list(task.analysed_tokens)].double().numpy())
    total_models = embedding.shape[0]
    results = []
    for configuration, rows in zip(configurations, rows_of, strict=True):
        seeds = tuple(
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
            for k, seed in zip(rows, configuration.seeds, strict=True)
        )
        results.append(
            ToyRunResult(
                task=task.name,
                model=configuration.model,
                train=configuration.train,
                seeds=seeds,
                seconds=seconds * len(rows) / total_models,
                train_acc=train_acc[rows].numpy(),
                test_acc=test_acc[rows].numpy(),
                embedding=embedding[rows].numpy(),
                output_centers=centers[rows].numpy(),
            )
        )
    return results


def train_toy_seeds(
    task: ToyTask,
    model_config: ToyModelConfig,
    train_config: ToyTrainConfig,
    seeds: tuple[int, ...] | list[int] = PAPER_SEEDS,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> ToyRunResult:
    """Train one model per seed of one configuration, all at once (:func:`train_toy_configs` of one).

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
        Where to train (see :func:`train_toy_configs`).

    Returns
    -------
    ToyRunResult
        Per-seed EV, grokking epochs and accuracies, the accuracy curves and
        the final embeddings.
    """
    configuration = ToyConfiguration(model_config, train_config, tuple(seeds))
    return train_toy_configs(task, [configuration], progress, device)[0]
