"""Every cell of the toy tables tested against the paper's seeds, to tell where harmono's grokking differs.

:func:`vs_paper_markdown` makes the table of the marked section
``toy-vs-paper``: per task and model, the paper's median test epoch and
seed count beside harmono's on each sampling, with the two p-values of
:func:`~harmono.experiments.harmonic.toy_paper.paper_comparison` (the test
epochs of the seeds that generalised; how many did).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harmono.data.toy import TASKS
from harmono.experiments.harmonic.toy_paper import p_text, paper_comparison, paper_test_epochs
from harmono.experiments.harmonic.toy_suite import MODEL_NAMES, SAMPLINGS, SUITE_ORDER, record_sampling
from harmono.experiments.harmonic.toy_tables import is_official, markdown_table
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS

VS_PAPER_SECTION = "toy-vs-paper"
"""Name of the marked section of the table."""


def _epoch_cell(epochs: Sequence[int], seeds: int) -> str:
    """The median test epoch of the seeds that got there, and how many of ``seeds`` did."""
    median = f"{np.median(epochs):.0f}" if len(epochs) else "-"
    return f"{median} ({len(epochs)}/{seeds})"


def vs_paper_markdown(records: Sequence[dict]) -> str:
    """The table of the section (Markdown): every task and model, harmono per sampling against the paper.

    Columns: the paper's median test epoch (its seeds reaching test > 0.9);
    per sampling, harmono's, then ``p`` as "test epochs; seeds", both
    two-sided. "pending" where a cell has not run.
    """
    cells = {
        (r["task"], r["model"]["arch"], r["model"]["head"], record_sampling(r)): r["seeds"]
        for r in records
        if is_official(r)
    }
    rows = []
    for task in TASKS:
        for arch, head in SUITE_ORDER:
            row = [
                task,
                MODEL_NAMES[arch, head],
                _epoch_cell(paper_test_epochs(task, arch, head), len(PAPER_SEEDS)),
            ]
            for sampling in SAMPLINGS:
                seeds = cells.get((task, arch, head, sampling))
                if seeds is None:
                    row += ["pending", "pending"]
                    continue
                test = paper_comparison(task, arch, head, seeds)
                reached = [s["test_epoch"] for s in seeds if s["test_epoch"] is not None]
                row += [
                    _epoch_cell(reached, len(seeds)),
                    f"{p_text(test.epochs_p)}; {p_text(test.reached_p)}",
                ]
            rows.append(row)
    headers = ["task", "model", "the paper"]
    for sampling in SAMPLINGS:
        headers += [f"harmono, {sampling} sampling" if sampling == "paper" else f"harmono, {sampling}", "p"]
    return markdown_table(headers, rows) + "\n"
