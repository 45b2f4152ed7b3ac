"""Which settings a toy record trained with: the paper's cells, harmono's controls of them, their labels.

A record of ``results/toy`` is a cell of the paper's tables when it trained
the 20 official seeds by harmono's default protocol (:func:`is_official`),
and a control of that cell when one of ``SUITE_CONTROLS`` changes the
protocol into its settings (:func:`protocol_label`).
"""

from __future__ import annotations

from dataclasses import asdict

from harmono.experiments.harmonic.toy_suite import DEFAULT_EXPONENT, paper_configs, record_sampling
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS, train_settings

SUITE_CONTROLS = (
    ({"eval_dropout": True}, "dropout on at evaluation (the official code)"),
    ({"weight_decay": 0.01}, "weight decay 0.01 (the paper's text)"),
    ({"embedding_reg": "none"}, "no embedding regulariser"),
    ({"epochs": 10_000}, "10,000 epochs (the paper's text for transformers)"),
    ({"eval_dropout": True, "epochs": 10_000}, "dropout on at evaluation and 10,000 epochs"),
    (
        {"weight_decay": 0.01, "eval_dropout": True, "epochs": 10_000},
        "the paper's text (weight decay 0.01, 10,000 epochs), dropout on at evaluation",
    ),
    ({"weight_decay": 0.0}, "no weight decay"),
    ({"official_draws": True}, "the paper's own splits (the official code's draws)"),
    (
        {"official_draws": True, "embedding_reg": "none"},
        "the paper's own splits, no embedding regulariser (the official MLPs in effect)",
    ),
    (
        {"official_draws": True, "eval_dropout": True},
        "the paper's own splits, dropout on at evaluation (the official transformers)",
    ),
    (
        {"official_draws": True, "weight_decay": 0.01, "eval_dropout": True, "epochs": 10_000},
        "the paper's own splits and its text (weight decay 0.01, 10,000 epochs), dropout on at evaluation",
    ),
)
"""The settings a suite control changes: (training fields -> their values, the row's label)."""
MAIN_SETTING = "harmono's default (the regulariser on, dropout off at evaluation)"
"""The label of a controlled cell's own row."""


def _protocol(record: dict, **overrides: object) -> bool:
    """Whether a record trained by the official protocol, its sampling and seeds aside.

    ``overrides`` (training fields) are applied to the protocol first.
    """
    settings = {**overrides, "paper_sampling": record["train"]["paper_sampling"]}
    if settings.get("official_draws") and not settings["paper_sampling"]:
        return False  # the official draws are with replacement
    _, train = paper_configs(record["task"], record["model"]["arch"], record["model"]["head"], **settings)
    return train_settings(record["train"]) == asdict(train)


def on_paper_seeds(record: dict) -> bool:
    """Whether a record trained the paper's 20 seeds."""
    return [s["seed"] for s in record["seeds"]] == list(PAPER_SEEDS)


def official_training(record: dict, **overrides: object) -> bool:
    """Whether a record trained on the 20 official seeds by the official protocol (``overrides`` applied)."""
    return _protocol(record, **overrides) and on_paper_seeds(record)


def is_official(record: dict) -> bool:
    """Whether a record is one cell of the paper's tables: official protocol, 20 seeds, exponent 2."""
    return official_training(record) and record["model"]["exponent"] == DEFAULT_EXPONENT


def suite_key(record: dict) -> tuple[str, str, str, str]:
    """A record's cell: task, architecture, head, sampling."""
    return record["task"], record["model"]["arch"], record["model"]["head"], record_sampling(record)


def training_label(record: dict, *, own_fraction: bool = False) -> str | None:
    """What a record's training was, its model and seeds aside: ``MAIN_SETTING``, a control's label, or None.

    ``own_fraction`` takes the record's train fraction as given (a point of a
    data-efficiency curve); otherwise the official fraction is part of the
    protocol. None for settings that no control of ``SUITE_CONTROLS`` lists.
    """
    fixed = {"train_fraction": record["train"]["train_fraction"]} if own_fraction else {}
    if _protocol(record, **fixed):
        return MAIN_SETTING
    return next(
        (label for overrides, label in SUITE_CONTROLS if _protocol(record, **overrides, **fixed)), None
    )


def protocol_label(record: dict) -> str | None:
    """What a record trained with, whatever its seeds: ``MAIN_SETTING``, a ``SUITE_CONTROLS`` label, or None.

    None for another exponent or settings that no control lists.
    """
    if record["model"]["exponent"] != DEFAULT_EXPONENT:
        return None
    return training_label(record)


def setting_label(record: dict) -> str | None:
    """``MAIN_SETTING`` for a suite cell, its ``SUITE_CONTROLS`` label for a control of one, else None."""
    return protocol_label(record) if on_paper_seeds(record) else None
