"""Read a toy stack's checkpoint back as models and measure them with dropout off and on.

``harmono toy suite`` keeps the whole state of a stack in
``stack-*.safetensors`` (in its ``--out`` folder), with the stack's spec in
the metadata: the latest state while it trains, the final one afterwards.
:func:`load_stack_checkpoint` rebuilds the
models from it. :func:`dropout_gap` measures each model's train and test
accuracy with dropout off (PyTorch's eval mode, harmono's evaluation) and
on (the mode it trains in, as the official code evaluates), averaged over
many draws of the masks: a small post-LN transformer trained with dropout
can fit its training set in one mode and not in the other. It also
measures them with dropout on at one of ``DROPOUT_SITES`` only, which shows
where the difference comes from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmono.analysis.toy_metrics import mean_std
from harmono.core.io import read_json, read_safetensors
from harmono.data.toy import ToySplit, ToyTask, toy_task
from harmono.experiments.harmonic.toy_batches import EvaluationSet
from harmono.experiments.harmonic.toy_protocols import setting_label
from harmono.experiments.harmonic.toy_suite import record_label
from harmono.experiments.harmonic.toy_tables import markdown_table
from harmono.experiments.harmonic.toy_tasks import ToyConfiguration, ToyTrainConfig
from harmono.experiments.harmonic.toy_training import (
    STACK_LAYOUT,
    configuration_rows,
    stack_layout,
    stack_task,
)
from harmono.models.toy import ToyModelConfig
from harmono.models.toy_stack import DROPOUT_SITES, BatchedToyModel

DROPOUT_GAP_SECTION = "toy-dropout-gap"
"""Name of the marked section of the committed dropout-gap reports."""
DROPOUT_SITES_SECTION = "toy-dropout-sites"
"""Name of the marked section of the reports' accuracies with dropout on at one site only."""


@dataclass(frozen=True)
class StackCheckpoint:
    """The models of a toy stack at a checkpoint, with their task and data."""

    task: ToyTask
    """The examples the stack trains on (:func:`~harmono.experiments.harmonic.toy_training.stack_task`)."""
    configurations: tuple[ToyConfiguration, ...]
    """The stack's configurations, in their order."""
    epoch: int
    """Epochs done when the checkpoint was written."""
    model: BatchedToyModel
    """Every model of the stack, one row each, in stack order."""
    members: tuple[tuple[ToyConfiguration, int], ...]
    """``(configuration, seed)`` of each row."""
    rows_of: tuple[list[int], ...]
    """The rows of each configuration, in its seed order."""
    splits: tuple[ToySplit, ...]
    """The train/test split of each row."""


def load_stack_checkpoint(path: str | Path) -> StackCheckpoint:
    """The stack saved in the checkpoint ``path``, its parameters restored.

    Raises
    ------
    ValueError
        ``path`` is damaged, is not a toy-stack checkpoint, was written with
        another row layout, or its parameters do not fit its spec (the
        message names the file and what it expected).
    """
    path = Path(path)
    state, metadata = read_safetensors(path)
    try:
        spec = json.loads(metadata["spec"])
        epoch = int(metadata["epoch"])
        layout = spec["layout"]
        task = toy_task(spec["task"])
        configurations = tuple(
            ToyConfiguration(ToyModelConfig(**c["model"]), ToyTrainConfig(**c["train"]), tuple(c["seeds"]))
            for c in spec["configurations"]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: not a toy-stack checkpoint: expected the metadata 'spec' (the stack as JSON) and "
            f"'epoch', got the keys {sorted(metadata)} ({error!r})"
        ) from error
    if layout != STACK_LAYOUT:
        raise ValueError(f"{path}: expected a stack of layout {STACK_LAYOUT!r}, got {layout!r}")
    members, splits, rows = stack_layout(task, configurations)
    model = BatchedToyModel([c.model for c, _ in members], [seed for _, seed in members])
    flat = state.get("flat")
    if flat is None or flat.shape != model.flat.shape:
        found = None if flat is None else tuple(flat.shape)
        raise ValueError(f"{path}: expected a tensor 'flat' of shape {tuple(model.flat.shape)}, got {found}")
    with torch.no_grad():
        model.flat.copy_(flat)
    rows_of = tuple(configuration_rows(configurations, rows))
    return StackCheckpoint(
        stack_task(task, configurations), configurations, epoch, model, tuple(members), rows_of, tuple(splits)
    )


def dropout_gap(path: str | Path, draws: int = 20) -> dict:
    """Each model's accuracies with dropout off and on (the mean of ``draws`` passes), and its embedding RMS.

    Returns
    -------
    dict
        ``{"checkpoint", "task", "epoch", "draws", "configurations"}``; each
        configuration ``{"model", "train", "seeds"}``, each seed
        ``{"seed", "train_acc_off", "test_acc_off", "train_acc_on",
        "test_acc_on", "embedding_rms", "on_at"}`` (the RMS of the input
        embedding; ``on_at`` maps each of ``DROPOUT_SITES`` to
        ``{"train_acc", "test_acc"}`` with dropout on there only).

    Raises
    ------
    ValueError
        ``draws`` is below 1, the checkpoint is unreadable, or its models
        have no dropout (MLPs): then both modes are the same.
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    stack = load_stack_checkpoint(path)
    if any(c.model.arch != "transformer" or c.model.dropout == 0.0 for c in stack.configurations):
        raise ValueError(
            f"{path}: expected transformers with dropout, got models without (MLPs or dropout 0)"
        )
    inputs, labels = torch.tensor(stack.task.inputs), torch.tensor(stack.task.labels)
    cpu = torch.device("cpu")
    seeds = [seed for _, seed in stack.members]
    train_off, test_off = EvaluationSet(list(stack.splits), cpu).accuracy(stack.model, inputs, labels)

    def mean_accuracy(sites: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = EvaluationSet(list(stack.splits), cpu, seeds, sites)
        train, test = zip(*(noisy.accuracy(stack.model, inputs, labels) for _ in range(draws)), strict=True)
        return torch.stack(train).mean(0), torch.stack(test).mean(0)

    train_on, test_on = mean_accuracy(DROPOUT_SITES)
    on_at = {site: mean_accuracy((site,)) for site in DROPOUT_SITES}
    rms = stack.model.embedding.detach().square().mean((1, 2)).sqrt()
    configurations = []
    for configuration, rows in zip(stack.configurations, stack.rows_of, strict=True):
        configurations.append(
            {
                **configuration.record(),
                "seeds": [
                    {
                        "seed": seed,
                        "train_acc_off": float(train_off[row]),
                        "test_acc_off": float(test_off[row]),
                        "train_acc_on": float(train_on[row]),
                        "test_acc_on": float(test_on[row]),
                        "embedding_rms": float(rms[row]),
                        "on_at": {
                            site: {"train_acc": float(train[row]), "test_acc": float(test[row])}
                            for site, (train, test) in on_at.items()
                        },
                    }
                    for row, seed in zip(rows, configuration.seeds, strict=True)
                ],
            }
        )
    return {
        "checkpoint": Path(path).name,
        "task": stack.task.name,
        "epoch": stack.epoch,
        "draws": draws,
        "configurations": configurations,
    }


def _mean_std_count(values: list[float], bar: float) -> str:
    above = sum(v > bar for v in values)
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f} ({above}/{len(values)} > {bar:g})"


def _configuration_cells(report: dict, configuration: dict) -> list[str]:
    """Task, model, setting (suite cell, which suite control, or neither) and epoch of one configuration."""
    record = {**configuration, "task": report["task"]}
    return [
        report["task"],
        record_label(record),
        setting_label(record) or "other settings",
        str(report["epoch"]),
    ]


def dropout_gap_rows(reports: Sequence[dict], bar: float = 0.9) -> tuple[list[str], list[list[str]]]:
    """A table of :func:`dropout_gap` reports: per configuration, its accuracies in both modes.

    Cells are mean ± std over seeds (seeds above ``bar``); "setting" says
    whether the configuration is a suite cell, a suite control (which) or
    neither; the last column is the correlation over seeds of the embedding
    RMS with the training accuracy with dropout off.
    """
    headers = ["task", "model", "setting", "epoch", "train acc, dropout off", "train acc, dropout on",
               "test acc, dropout off", "test acc, dropout on",
               "corr(embedding RMS, train acc off)"]  # fmt: skip
    rows = []
    for report in reports:
        for configuration in report["configurations"]:
            seeds = configuration["seeds"]
            column = {key: [s[key] for s in seeds] for key in seeds[0]}
            corr = (
                np.corrcoef(column["embedding_rms"], column["train_acc_off"])[0, 1]
                if len(seeds) > 1
                else None
            )
            rows.append([
                *_configuration_cells(report, configuration),
                *(_mean_std_count(column[key], bar)
                  for key in ("train_acc_off", "train_acc_on", "test_acc_off", "test_acc_on")),
                "-" if corr is None or not np.isfinite(corr) else f"{corr:.2f}",
            ])  # fmt: skip
    return headers, rows


def read_dropout_gap_reports(folder: str | Path) -> list[dict]:
    """The :func:`dropout_gap` reports (``*.json``) in ``folder``, by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a folder of dropout-gap reports (*.json), got {folder}")
    keys = ("task", "epoch", "configurations")
    return [read_json(path, "a dropout-gap report", keys) for path in sorted(folder.glob("*.json"))]


def dropout_gap_markdown(reports: Sequence[dict]) -> str:
    """The Markdown table of :func:`dropout_gap_rows` (``DROPOUT_GAP_SECTION`` of the docs)."""
    if not reports:
        return "No dropout-gap report yet.\n"
    return markdown_table(*dropout_gap_rows(reports)) + "\n"


def dropout_site_rows(reports: Sequence[dict], bar: float = 0.9) -> tuple[list[str], list[list[str]]]:
    """A table of each configuration's training accuracy with dropout on at one site only.

    Columns: dropout off, on at each of ``DROPOUT_SITES`` only, on
    everywhere (mean ± std over seeds, seeds above ``bar``). Reports
    without ``on_at`` are left out.
    """
    headers = ["task", "model", "setting", "epoch", "dropout off",
               *(f"on only: {site}" for site in DROPOUT_SITES), "dropout on"]  # fmt: skip
    rows = []
    for report in reports:
        for configuration in report["configurations"]:
            seeds = configuration["seeds"]
            if "on_at" not in seeds[0]:
                continue
            on_at = [[s["on_at"][site]["train_acc"] for s in seeds] for site in DROPOUT_SITES]
            rows.append([
                *_configuration_cells(report, configuration),
                _mean_std_count([s["train_acc_off"] for s in seeds], bar),
                *(_mean_std_count(values, bar) for values in on_at),
                _mean_std_count([s["train_acc_on"] for s in seeds], bar),
            ])  # fmt: skip
    return headers, rows


def dropout_site_markdown(reports: Sequence[dict]) -> str:
    """The Markdown table of :func:`dropout_site_rows` (``DROPOUT_SITES_SECTION`` of the docs)."""
    headers, rows = dropout_site_rows(reports)
    if not rows:
        return "No report measures dropout by site yet.\n"
    return markdown_table(headers, rows) + "\n"
