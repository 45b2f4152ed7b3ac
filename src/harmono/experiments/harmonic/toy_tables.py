"""The toy suite's tables beside the paper's numbers, from run records or the committed ``results/toy``.

:func:`suite_rows` lays a suite out as the paper does (tasks x the four
models: per-seed top-2 EV as median [min-max], grokking epochs).
:func:`results_markdown` makes the Markdown of every committed result, one
table per sampling, with "pending" where a configuration has not run;
``harmono toy tables`` writes it into the README and the docs between the
markers of the section ``toy-tables``, and the exponent sweep, the
data-efficiency curves, their controls and the suite's controls into
sections of their own (and each cell tested against the paper's seeds,
:mod:`harmono.experiments.harmonic.toy_vs_paper`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harmono.analysis.toy_metrics import mean_std, median_range
from harmono.data.toy import TASKS
from harmono.experiments.harmonic.toy_efficiency import EFFICIENCY_FRACTIONS
from harmono.experiments.harmonic.toy_paper import PAPER_EV_TOP2, PAPER_GROKKING, paper_comparison
from harmono.experiments.harmonic.toy_protocols import (
    MAIN_SETTING,
    is_official,
    official_training,
    on_paper_seeds,
    setting_label,
    suite_key,
    training_label,
)
from harmono.experiments.harmonic.toy_suite import (
    DEFAULT_EXPONENT,
    MODEL_NAMES,
    SAMPLINGS,
    SUITE_ORDER,
    is_sampling_twin,
    model_label,
    record_sampling,
)
from harmono.experiments.harmonic.toy_tasks import (
    GROKKING_THRESHOLD,
    GROKKING_WINDOW,
    PAPER_SEEDS,
    ToyTrainConfig,
)


def _percent_range(values: list[float]) -> str:
    median, low, high = median_range([100 * v for v in values])
    return f"{median:.3g} [{low:.0f}-{high:.0f}]"


def _grokking_cell(seeds: list[dict]) -> str:
    reached = sum(s["test_epoch"] is not None for s in seeds)
    train = median_range([s["train_epoch"] for s in seeds])
    test = median_range([s["test_epoch"] for s in seeds])
    count = f" ({reached}/{len(seeds)})" if reached < len(seeds) else ""
    if test is None:
        return f"- ({reached}/{len(seeds)})"
    return f"{train[0]:.0f}→{test[0]:.0f}{count}" if train else f"test {test[0]:.0f}{count}"


def suite_rows(records: Sequence[dict], cell: str) -> tuple[list[str], list[list[str]]]:
    """A task x model table of the suite with the paper's value beside each cell.

    ``cell`` is ``"ev"`` (top-2 EV in %, median [min-max] over seeds) or
    ``"grokking"`` (median epoch train > 0.9 -> test > 0.9, seeds reaching
    test > 0.9 when not all). Returns ``(headers, rows)``.
    """
    by_key = {(r["task"], r["model"]["arch"], r["model"]["head"]): r for r in records}
    if len(by_key) < len(records):
        raise ValueError("expected one record per task, architecture and head; select one sampling first")
    paper = PAPER_EV_TOP2 if cell == "ev" else PAPER_GROKKING
    present = [key for key in SUITE_ORDER if any(k[1:] == key for k in by_key)]
    headers = ["task"] + [f"{MODEL_NAMES[key]} (paper)" for key in present]
    rows = []
    for task in TASKS:
        if not any(k[0] == task for k in by_key):
            continue
        row = [task]
        for key in present:
            record = by_key.get((task, *key))
            if record is None:
                row.append("-")
                continue
            seeds = record["seeds"]
            ours = _percent_range([s["ev_top2"] for s in seeds]) if cell == "ev" else _grokking_cell(seeds)
            row.append(f"{ours} ({paper[task][SUITE_ORDER.index(key)]})")
        rows.append(row)
    return headers, rows


SAMPLING_TITLES = {
    "leak-free": "leak-free split (drawn without replacement: no test example is in training)",
    "paper": "the paper's sampling (drawn with replacement: test examples repeat training examples)",
}
SECTION = "toy-tables"
"""Name of the marked section the tables go into (:mod:`harmono.report.marked_sections`)."""
EXPONENT_SECTION = "toy-exponents"
"""Name of the marked section of the exponent table."""
EFFICIENCY_SECTION = "toy-efficiency"
"""Name of the marked section of the data-efficiency table."""
CONTROLS_SECTION = "toy-efficiency-controls"
"""Name of the marked section of the data-efficiency controls."""
SUITE_CONTROLS_SECTION = "toy-suite-controls"
"""Name of the marked section of the suite cells rerun with the settings of one control changed."""
ACCURACY_BAR = 0.9
"""Test accuracy from which a model counts as having generalised."""
BUDGETS = (500, 1000, 2000)
"""Epochs at which the 20-seed controls count the seeds that had generalised (the training-budget control)."""
EXPONENT_SWEEP = {"modadd": (1.0, 2.0, 4.0, 8.0), "lattice": (1.0, 2.0, 4.0, 8.0), "permutation": (2.0, 4.0)}
"""The exponent sweep: harmonic MLPs on each task with its exponents (harmono's ``p ∝ d^-n``)."""


def read_results(results_dir: str | Path) -> list[dict]:
    """Every ``*.json`` record in ``results_dir`` and its subfolders (``toy suite --results``), by path.

    Controls that rerun a configuration with other seeds live in subfolders,
    so that their files do not replace the main ones of the same name. A
    training stored twice (a 20-seed data-efficiency run at the official
    train fraction is the suite's cell again) counts once: the file nearest
    the top of ``results_dir`` is kept.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"expected a folder of toy results (*.json), got {results_dir}")
    by_training: dict[str, dict] = {}
    for path in sorted(results_dir.rglob("*.json"), key=lambda p: (len(p.parts), p)):
        try:
            record = json.loads(path.read_text())
            seeds = [seed["seed"] for seed in record["seeds"]]
            training = {"task": record["task"], "model": record["model"], "train": record["train"]}
            record["model"]["head"], record["train"]["paper_sampling"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a toy result record ({error!r})") from error
        by_training.setdefault(json.dumps({**training, "seeds": seeds}, sort_keys=True), record)
    return list(by_training.values())


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, cells unpadded (the docs' committed tables)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _full_rows(records: Sequence[dict], cell: str) -> tuple[list[str], list[list[str]]]:
    """Like :func:`suite_rows` for all five tasks and four models, "pending" where nothing ran."""
    headers, rows = suite_rows(records, cell) if records else (["task"], [])
    done = {row[0]: dict(zip(headers[1:], row[1:], strict=True)) for row in rows}
    paper = PAPER_EV_TOP2 if cell == "ev" else PAPER_GROKKING
    full_headers = ["task"] + [f"{MODEL_NAMES[key]} (paper)" for key in SUITE_ORDER]
    full_rows = []
    for task in TASKS:
        row = [task]
        for index, header in enumerate(full_headers[1:]):
            found = done.get(task, {}).get(header, "-")
            row.append(found if found != "-" else f"pending ({paper[task][index]})")
        full_rows.append(row)
    return full_headers, full_rows


def results_markdown(records: Sequence[dict]) -> str:
    """The Markdown tables of the official-protocol records, per sampling: top-2 EV, then grokking."""
    official = [r for r in records if is_official(r)]
    blocks = []
    for sampling in SAMPLINGS:
        chosen = [r for r in official if record_sampling(r) == sampling]
        seeds = sorted({len(r["seeds"]) for r in chosen})
        count = f"{'/'.join(map(str, seeds))} seeds" if seeds else "no run yet"
        blocks.append(f"**Top-2 PCA explained variance (%) of the embeddings, {SAMPLING_TITLES[sampling]}**: "
                      f"median [min-max] over seeds ({count}), the paper's in parentheses.")  # fmt: skip
        blocks.append(markdown_table(*_full_rows(chosen, "ev")))
        blocks.append(f"**Grokking, {SAMPLING_TITLES[sampling]}**: median first epoch of 20 in a row with "
                      "train accuracy > 0.9 → the same for test (seeds whose test accuracy got there, when "
                      "not all), the paper's in parentheses, its epochs counted from 1 as harmono's (the "
                      "official code counts from 0).")  # fmt: skip
        blocks.append(markdown_table(*_full_rows(chosen, "grokking")))
    return "\n\n".join(blocks) + "\n"


def suite_controls_markdown(records: Sequence[dict]) -> str:
    """Each suite cell rerun with the settings of one of ``SUITE_CONTROLS`` changed, beneath the cell itself.

    Rows: per cell with a control, the main record (harmono's settings;
    "pending" if it has not run), then each control. A task used whole
    shows its runs as leak-free (its paper-sampling runs are the same models).
    Columns: top-2 EV (%, median [min-max]), grokking (median epoch
    train > 0.9 -> test > 0.9), final train and test accuracy (mean ± std
    over seeds), the p-values of
    :func:`~harmono.experiments.harmonic.toy_paper.paper_comparison` (the
    test epochs; the seeds that got there), the paper's grokking.
    """
    main = {suite_key(r): r for r in records if is_official(r)}
    controls: dict[tuple[str, str, str, str], dict[str, dict]] = {}
    for record in records:
        key, setting = suite_key(record), setting_label(record)
        if setting in (None, MAIN_SETTING):  # not a control of a suite cell
            continue
        if is_sampling_twin(record):  # the models of its leak-free twin: shown as that one
            key = (*key[:3], "leak-free")
        controls.setdefault(key, {}).setdefault(setting, record)
    rows = []
    for key in sorted(controls, key=lambda k: (TASKS.index(k[0]), model_label(*k[1:]))):
        paper = PAPER_GROKKING[key[0]][SUITE_ORDER.index(key[1:3])]
        for setting, record in [(MAIN_SETTING, main.get(key)), *sorted(controls[key].items())]:
            cells = ["pending"] * 5
            if record is not None:
                seeds = record["seeds"]
                cells = [_percent_range([s["ev_top2"] for s in seeds]), _grokking_cell(seeds),
                         _mean_std([s["final_train_acc"] for s in seeds]),
                         _mean_std([s["final_test_acc"] for s in seeds]),
                         paper_comparison(*key[:3], seeds).p_cell]  # fmt: skip
            rows.append([key[0], model_label(*key[1:]), setting, *cells, paper])
    headers = ["task", "model", "setting", "top-2 EV %", "epoch train > 0.9 → test > 0.9",
               "final train accuracy", "final test accuracy", "p vs the paper: test epochs; seeds",
               "paper's grokking"]  # fmt: skip
    return (markdown_table(headers, rows) if rows else "No control has run yet.") + "\n"


def _mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f}" if len(values) < 2 else f"{mean:.2f} ± {std:.2f}"


def exponent_markdown(records: Sequence[dict]) -> str:
    """The exponent sweep of harmonic MLPs: each task of ``EXPONENT_SWEEP`` x samplings x its exponents.

    A configuration not yet run says "pending".
    Columns: top-2 EV (%, median [min-max]), grokking (median epoch train >
    0.9 -> test > 0.9), final test accuracy (mean ± std over seeds).
    """
    found = {
        (r["task"], record_sampling(r), r["model"]["exponent"]): r
        for r in records
        if r["model"]["arch"] == "mlp" and r["model"]["head"] == "harmonic" and official_training(r)
    }
    rows = []
    for task, exponents in EXPONENT_SWEEP.items():
        for sampling in SAMPLINGS:
            for n in exponents:
                record = found.get((task, sampling, n))
                cells = ["pending"] * 3
                if record is not None:
                    seeds = record["seeds"]
                    cells = [_percent_range([s["ev_top2"] for s in seeds]), _grokking_cell(seeds),
                             _mean_std([s["final_test_acc"] for s in seeds])]  # fmt: skip
                rows.append([task, sampling, f"{n:g}", *cells])
    headers = ["task", "sampling", "n", "top-2 EV %", "epoch train > 0.9 → test > 0.9", "final test accuracy"]
    return markdown_table(headers, rows) + "\n"


class _Curve(NamedTuple):
    """One data-efficiency curve: a model, sampling, exponent and training setting, with its seed count."""

    task: str
    arch: str
    head: str
    sampling: str
    exponent: float
    setting: str
    seeds: int

    @property
    def label(self) -> str:
        label = model_label(self.arch, self.head, self.sampling, self.exponent)
        return label if self.setting == MAIN_SETTING else f"{label}, {self.setting}"

    @property
    def is_control(self) -> bool:
        """20 seeds, a harmonic exponent other than the default, or a control's training setting."""
        many_seeds = self.seeds == len(PAPER_SEEDS)
        return many_seeds or self.exponent != DEFAULT_EXPONENT or self.setting != MAIN_SETTING


def _efficiency_points(records: Sequence[dict], arch: str) -> dict[_Curve, dict[float, list]]:
    """``{curve: {train fraction: the record's per-seed results}}`` of the data-efficiency records.

    A data-efficiency record trained with an explicit train fraction on the
    official protocol or a control's (``toy_protocols.training_label``). The
    suite's records, which train the official fraction with 20 seeds or more
    (its cells, its exponents, its controls and their extra seeds), make no
    curve of their own; a suite record on the paper's 20 seeds is the point
    at the official fraction of the 20-seed curve with its model and
    setting (the same training), where such a curve has run.
    """
    points: dict[_Curve, dict[float, list]] = {}
    suite_points: dict[_Curve, list] = {}
    for r in records:
        if r["model"]["arch"] != arch:
            continue
        setting = training_label(r, own_fraction=True)
        if setting is None:
            continue
        model = r["model"]
        curve = _Curve(
            r["task"], arch, model["head"], record_sampling(r), model["exponent"], setting, len(r["seeds"])
        )
        fraction = r["train"]["train_fraction"]
        if fraction != ToyTrainConfig.train_fraction or len(r["seeds"]) < len(PAPER_SEEDS):
            points.setdefault(curve, {})[fraction] = r["seeds"]
        elif on_paper_seeds(r):
            suite_points.setdefault(curve, r["seeds"])
    for curve, seeds in suite_points.items():
        if curve in points:
            points[curve].setdefault(ToyTrainConfig.train_fraction, seeds)
    return points


def efficiency_curves(
    records: Sequence[dict],
    arch: str = "mlp",
    many_seeds: bool = False,
    other_exponents: bool = False,
    setting: str = MAIN_SETTING,
) -> dict[str, dict[str, tuple]]:
    """``{task: {model label: (fractions (F,), accuracy (S, F))}}`` of the data-efficiency records.

    The curves of :func:`_efficiency_points` trained with ``setting`` (the
    official protocol by default, or a control's label of
    ``toy_protocols.SUITE_CONTROLS``), with fewer than 20 seeds (3 by
    default) or with 20 (``many_seeds``, the seed-count control), at the
    default exponent unless ``other_exponents`` (the exponent controls);
    fractions with no record are left out of a curve.
    """
    points = _efficiency_points(records, arch)
    curves: dict[str, dict[str, tuple]] = {}
    for task in TASKS:
        for curve, by_fraction in points.items():
            if curve.task != task or curve.setting != setting:
                continue
            if curve.exponent != DEFAULT_EXPONENT and not other_exponents:
                continue
            if (curve.seeds == len(PAPER_SEEDS)) != many_seeds:
                continue
            fractions = sorted(by_fraction)
            accuracy = np.array([[s["final_test_acc"] for s in by_fraction[f]] for f in fractions]).T
            label = model_label(curve.arch, curve.head, curve.sampling, curve.exponent)
            curves.setdefault(task, {})[label] = (np.array(fractions), accuracy)
    return curves


def _passing_cell(seeds: list[dict]) -> str:
    accuracy = [s["final_test_acc"] for s in seeds]
    passing = sum(a >= ACCURACY_BAR for a in accuracy)
    return f"{_mean_std(accuracy)} ({passing}/{len(accuracy)})"


def _budget_cell(seeds: list[dict]) -> str:
    reached = [s["test_epoch"] for s in seeds if s["test_epoch"] is not None]
    return (
        " / ".join(str(sum(epoch <= budget for epoch in reached)) for budget in BUDGETS)
        + f" / {len(reached)}"
    )


def _budget_markdown(task: str, fractions: list[float], curves: dict[str, dict[float, list]]) -> str:
    """The training-budget control: per 20-seed curve and fraction, the seeds generalised by each budget."""
    caption = (
        f"{task}, 20 seeds: how many had generalised (test accuracy > {GROKKING_THRESHOLD:g}, "
        f"{GROKKING_WINDOW} epochs in a row) by epoch {' / '.join(f'{b:,}' for b in BUDGETS)} / the end"
    )
    rows = [
        [task, label, "20", *(_budget_cell(by_fraction[f]) if f in by_fraction else "-" for f in fractions)]
        for label, by_fraction in sorted(curves.items())
    ]
    return caption + "\n\n" + markdown_table(["task", "model", "seeds", *(f"{f:g}" for f in fractions)], rows)


def efficiency_controls_markdown(records: Sequence[dict]) -> str:
    """The controls of the data-efficiency curves beside the curves they test, per task with a control.

    A control is a curve with 20 seeds or a harmonic exponent other than 2.
    Rows: every curve of that task on the controls' samplings (with its seed
    count); columns: the controls' train fractions. A cell is the final test
    accuracy, mean ± std over seeds, and how many seeds reach
    ``ACCURACY_BAR``; "-" where a curve has no point. A task with 20-seed
    controls adds the training-budget table (:func:`_budget_markdown`).
    """
    points = _efficiency_points(records, "mlp")
    blocks = []
    for task in TASKS:
        controls = {
            curve: value for curve, value in points.items() if curve.task == task and curve.is_control
        }
        if not controls:
            continue
        fractions = sorted({f for by_fraction in controls.values() for f in by_fraction})
        samplings = {curve.sampling for curve in controls}
        rows = []
        for curve, by_fraction in sorted(points.items(), key=lambda item: (item[0].label, item[0].seeds)):
            if curve.task != task or curve.sampling not in samplings:
                continue
            cells = [_passing_cell(by_fraction[f]) if f in by_fraction else "-" for f in fractions]
            rows.append([task, curve.label, str(curve.seeds), *cells])
        blocks.append(markdown_table(["task", "model", "seeds", *(f"{f:g}" for f in fractions)], rows))
        many = {curve.label: value for curve, value in controls.items() if curve.seeds == len(PAPER_SEEDS)}
        if many:
            blocks.append(_budget_markdown(task, fractions, many))
    return ("\n\n".join(blocks) if blocks else "No control has run yet.") + "\n"


def efficiency_markdown(records: Sequence[dict]) -> str:
    """Final test accuracy (mean ± std over seeds) per task and curve (rows) and train fraction (columns)."""
    curves = efficiency_curves(records)
    labels = [
        model_label("mlp", head, sampling) for head in ("standard", "harmonic") for sampling in SAMPLINGS
    ]
    rows = []
    for task in TASKS:
        for label in labels:
            fractions, accuracy = curves.get(task, {}).get(label, (np.empty(0), None))
            row = [task, label]
            for fraction in EFFICIENCY_FRACTIONS:
                hits = [k for k, f in enumerate(fractions) if abs(f - fraction) < 1e-9]
                row.append(_mean_std(list(accuracy[:, hits[0]])) if hits else "pending")
            rows.append(row)
    return markdown_table(["task", "model", *(f"{f:g}" for f in EFFICIENCY_FRACTIONS)], rows) + "\n"
