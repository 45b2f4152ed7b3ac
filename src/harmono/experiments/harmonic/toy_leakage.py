"""How much of each test set the paper's own splits leaked, against harmono's, and what it does to grokking.

The official code draws each seed's examples with replacement, so part of
a test set is training examples (:attr:`~harmono.data.toy.ToySplit.leakage`).
harmono's paper sampling draws from the same law with another generator:
the same leakage on average, other splits seed by seed.
:func:`leakage_markdown` makes the section ``toy-leakage``:

1. per task drawn with replacement, the leakage of the paper's 20 splits
   (replayed, :mod:`harmono.data.official_toy_draws`) beside harmono's
   splits of the same seeds, the mean the law gives
   (:func:`expected_leakage`) and the Mann-Whitney p of the two;
2. for the genealogy, where the mean leakage (88%) is just under the 90%
   test accuracy that counts as generalised, harmono's MLP seeds (the
   default setting, every seed trained) by their split's leakage, beside
   how many of the paper's splits fall in each band.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harmono.analysis.rank_tests import mann_whitney
from harmono.data.official_toy_draws import official_split, official_task
from harmono.data.toy import PAPER_DATA_SIZE, TASKS, WHOLE_TASKS, split_task, toy_task
from harmono.experiments.harmonic.toy_paper import p_text
from harmono.experiments.harmonic.toy_protocols import MAIN_SETTING, protocol_label, suite_key
from harmono.experiments.harmonic.toy_suite import MODEL_NAMES
from harmono.experiments.harmonic.toy_tables import markdown_table
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS

LEAKAGE_SECTION = "toy-leakage"
"""Name of the marked section of the tables."""
LEAKY_TASKS = tuple(task for task in TASKS if task not in WHOLE_TASKS)
"""The tasks the official code draws with replacement."""
GENEALOGY_BANDS = (0.87, 0.89)
"""Edges of the leakage bands of the genealogy table."""


def expected_leakage(task: str, train_fraction: float = 0.8, data_size: int = PAPER_DATA_SIZE) -> float:
    """Mean leakage of an official split: ``1 - (1 - 1/U)^n_train``, ``U`` the examples of the official task.

    A test example leaks when its example is among the ``n_train``
    independent, uniform training draws.
    """
    unique = len(official_task(task).labels)
    return 1.0 - (1.0 - 1.0 / unique) ** int(train_fraction * data_size)


def _percent_cell(values: Sequence[float]) -> str:
    return f"{100 * np.median(values):.1f} [{100 * min(values):.1f}-{100 * max(values):.1f}]"


def split_leakage_rows() -> list[list[str]]:
    """Per task drawn with replacement: the paper's splits, harmono's, the law's mean, ``p``."""
    rows = []
    for task in LEAKY_TASKS:
        paper = [official_split(task, seed).leakage for seed in PAPER_SEEDS]
        own = [split_task(toy_task(task), 0.8, seed, paper_sampling=True).leakage for seed in PAPER_SEEDS]
        rows.append(
            [task, _percent_cell(paper), _percent_cell(own), f"{100 * expected_leakage(task):.1f}",
             p_text(mann_whitney(paper, own).p)]
        )  # fmt: skip
    return rows


def _band(leakage: float) -> int:
    return int(np.searchsorted(GENEALOGY_BANDS, leakage, side="right"))


def _band_names() -> list[str]:
    edges = [f"{100 * edge:g}%" for edge in GENEALOGY_BANDS]
    return [f"< {edges[0]}", *(f"{a}-{b}" for a, b in zip(edges, edges[1:], strict=False)), f">= {edges[-1]}"]


def genealogy_band_rows(records: Sequence[dict]) -> list[list[str]]:
    """The genealogy MLP seeds (paper sampling, default setting) by their split's leakage band.

    A seed trained in several records (the same model) counts once.
    """
    paper_bands = [_band(official_split("genealogy", seed).leakage) for seed in PAPER_SEEDS]
    rows = []
    for head in ("standard", "harmonic"):
        seeds = {
            s["seed"]: s for r in records if suite_key(r) == ("genealogy", "mlp", head, "paper")
            and protocol_label(r) == MAIN_SETTING for s in r["seeds"]
        }  # fmt: skip
        for band, name in enumerate(_band_names()):
            chosen = [s for s in seeds.values() if _band(s["leakage"]) == band]
            reached = [s["test_epoch"] for s in chosen if s["test_epoch"] is not None]
            median = f"{np.median(reached):.0f}" if reached else "-"
            rows.append(
                [MODEL_NAMES["mlp", head], name, str(len(chosen)), f"{len(reached)}", median,
                 str(paper_bands.count(band))]
            )  # fmt: skip
    return rows


def leakage_markdown(records: Sequence[dict]) -> str:
    """The section's two tables (Markdown); see the module notes."""
    splits = markdown_table(
        ["task", "the paper's 20 splits: leakage %, median [min-max]", "harmono's splits of the same seeds",
         "the law's mean", "p"],
        split_leakage_rows(),
    )  # fmt: skip
    bands = markdown_table(
        ["model", "leakage of the split", "harmono's seeds", "reached test > 0.9", "median test epoch",
         "the paper's splits"],
        genealogy_band_rows(records),
    )  # fmt: skip
    title = (
        "\n\n**Genealogy, paper sampling**: harmono's MLP seeds (its default setting, every seed trained) "
        "by their split's leakage, and how many of the paper's 20 splits have such a leakage.\n\n"
    )
    return splits + title + bands + "\n"
