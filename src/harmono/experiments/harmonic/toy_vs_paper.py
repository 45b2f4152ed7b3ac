"""Every cell of the toy tables tested against the paper's seeds, to tell where harmono's grokking differs.

:func:`vs_paper_markdown` makes the table of the marked section
``toy-vs-paper``: per task and model, the paper's median test epoch and
seed count beside harmono's on each sampling, with the two p-values of
:func:`~harmono.experiments.harmonic.toy_paper.paper_comparison` (the test
epochs of the seeds that generalised; how many did). Below it, a
configuration also trained on other seeds than the paper's (``toy suite
--seed-list``) is tested alone and pooled with its 20-seed record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harmono.data.toy import TASKS
from harmono.experiments.harmonic.toy_paper import paper_comparison, paper_median_epoch, paper_test_epochs
from harmono.experiments.harmonic.toy_protocols import (
    is_official,
    on_paper_seeds,
    protocol_label,
    setting_label,
    suite_key,
)
from harmono.experiments.harmonic.toy_suite import (
    MODEL_NAMES,
    SAMPLINGS,
    SUITE_ORDER,
    model_label,
)
from harmono.experiments.harmonic.toy_tables import markdown_table
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS

VS_PAPER_SECTION = "toy-vs-paper"
"""Name of the marked section of the table."""


def _epoch_cell(median: float | None, reached: int, seeds: int) -> str:
    """The median test epoch of the seeds that got there, and how many of ``seeds`` did."""
    return f"{'-' if median is None else f'{median:.0f}'} ({reached}/{seeds})"


def _paper_cell(task: str, arch: str, head: str) -> str:
    epochs = paper_test_epochs(task, arch, head)
    return _epoch_cell(paper_median_epoch(epochs), len(epochs), len(PAPER_SEEDS))


def vs_paper_markdown(records: Sequence[dict]) -> str:
    """The table of the section (Markdown): every task and model, harmono per sampling against the paper.

    Columns: the paper's median test epoch (its seeds reaching test > 0.9);
    per sampling, harmono's, then ``p`` as "test epochs; seeds", both
    two-sided. "pending" where a cell has not run.
    """
    cells = {suite_key(r): r["seeds"] for r in records if is_official(r)}
    rows = []
    for task in TASKS:
        for arch, head in SUITE_ORDER:
            row = [
                task,
                MODEL_NAMES[arch, head],
                _paper_cell(task, arch, head),
            ]
            for sampling in SAMPLINGS:
                seeds = cells.get((task, arch, head, sampling))
                if seeds is None:
                    row += ["pending", "pending"]
                    continue
                row += _tested_cells(task, arch, head, seeds)
            rows.append(row)
    headers = ["task", "model", "the paper"]
    for sampling in SAMPLINGS:
        headers += [f"harmono, {sampling} sampling" if sampling == "paper" else f"harmono, {sampling}", "p"]
    return markdown_table(headers, rows) + "\n" + _more_seeds_markdown(records)


def _tested_cells(task: str, arch: str, head: str, seeds: Sequence[dict]) -> list[str]:
    """The median test epoch of the seeds that got there, and ``p`` ("test epochs; seeds")."""
    reached = [s["test_epoch"] for s in seeds if s["test_epoch"] is not None]
    median = float(np.median(reached)) if reached else None
    return [_epoch_cell(median, len(reached), len(seeds)), paper_comparison(task, arch, head, seeds).p_cell]


def _tested_row(key: tuple[str, str, str, str], setting: str, which: str, seeds: list[dict]) -> list[str]:
    return [key[0], model_label(*key[1:]), setting, which, *_tested_cells(*key[:3], seeds)]


def _more_seeds_markdown(records: Sequence[dict]) -> str:
    """Records of the protocol or a control of it on none of the paper's seeds, alone and pooled; or ""."""
    twenty = {(suite_key(r), setting_label(r)): r["seeds"] for r in records if on_paper_seeds(r)}
    rows = []
    for record in records:
        setting, seeds = protocol_label(record), record["seeds"]
        numbers = [s["seed"] for s in seeds]
        if setting is None or set(numbers) & set(PAPER_SEEDS):  # a subset of the paper's seeds is no more
            continue
        key = suite_key(record)
        rows.append(_tested_row(key, setting, f"{len(seeds)} others ({min(numbers)}-{max(numbers)})", seeds))
        base = twenty.get((key, setting))
        if base is not None:
            rows.append(
                _tested_row(key, setting, f"with the paper's 20 ({len(seeds) + len(base)})", base + seeds)
            )
    if not rows:
        return ""
    headers = ["task", "model", "setting", "seeds", "harmono", "p"]
    title = (
        "\n**More seeds**: configurations also trained on seeds other than the paper's, alone and pooled.\n\n"
    )
    return title + markdown_table(headers, rows) + "\n"
