"""Final validation losses of GPT runs, grouped by head, exponent and schedule; committed run records.

A run is a run directory (``run.json`` + ``results.json``) or the JSON
record :func:`run_record` makes of one (``harmono gpt summary --results``
writes them under ``results/gpt/``, and the tables are made again from
those files alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from harmono.analysis.toy_metrics import mean_std
from harmono.core.io import read_json, write_json_atomically
from harmono.core.provenance import exported_provenance
from harmono.experiments.harmonic.gpt_train import RESULTS_FILE
from harmono.training.runs import RUN_FILE

SECTION = "gpt-runs"
"""Name of the marked section the table goes into (:mod:`harmono.report.marked_sections`)."""


REQUIRED = {
    "model": ("head", "n_embd"),
    "train": ("lr", "min_lr", "warmup_steps", "seed"),
    "results": ("tokens", "seconds"),
}
"""What the summary reads of a run record, by section."""


def run_record(run: str | Path) -> dict:
    """``{"name", "model", "train", "results", ...}`` of a finished run directory, or a saved record as is.

    Raises ``ValueError`` naming the file when a section or an entry the summary needs is missing.
    """
    run = Path(run)
    if run.is_file():
        record, source = read_json(run, "a GPT run record", tuple(REQUIRED), tuple(REQUIRED)), run
    else:
        if not (run / RESULTS_FILE).is_file():
            raise ValueError(f"expected a finished run (results.json) in {run}, found none")
        saved = read_json(run / RUN_FILE, "a GPT run record", ("model", "train"), ("model", "train"))
        results = read_json(run / RESULTS_FILE, "a GPT run's results")
        record = {"name": run.name, "model": saved["model"], "train": saved["train"], "results": results}
        if "provenance" in saved:
            record["provenance"] = saved["provenance"]
        source = f"{run / RUN_FILE} and {run / RESULTS_FILE}"
    for section, keys in REQUIRED.items():
        entries = record[section]
        missing = [key for key in keys if key not in entries]
        if missing:
            raise ValueError(f"{source}: expected a GPT run record whose {section} has {list(keys)}, "
                             f"got one without {missing}")  # fmt: skip
    if "final_val_loss" not in record["results"] and "val_loss" not in record["results"]:
        raise ValueError(f"{source}: expected a validation loss (final_val_loss or val_loss), found none")
    return record


def exponent(model: dict) -> float | None:
    """The harmonic exponent in use (``harmonic_exponent``, 0: ``sqrt(n_embd)``); ``None`` if standard."""
    if model["head"] != "harmonic":
        return None
    return model.get("harmonic_exponent") or math.sqrt(model["n_embd"])


def _final_loss(results: dict) -> float:
    """The loss over the whole validation split, or the last periodic one when the run skipped it."""
    return results["final_val_loss"] if "final_val_loss" in results else results["val_loss"]


def summary_rows(runs: Sequence[str | Path]) -> list[dict]:
    """Final validation loss of finished runs by head, exponent and schedule (mean, sample std over seeds).

    One row per group: the standard head first, then the harmonic head by
    exponent, then by learning rate.
    """
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        record = run_record(run)
        train = record["train"]
        key = (record["model"]["head"], exponent(record["model"]), train["lr"], train["min_lr"],
               train["warmup_steps"])  # fmt: skip
        groups.setdefault(key, []).append(record)
    rows = []
    order = sorted(groups, key=lambda k: (k[0] != "standard", k[1] or 0.0, k[2], k[3], k[4]))
    for head, n, lr, min_lr, warmup in order:
        members = groups[(head, n, lr, min_lr, warmup)]
        losses = [_final_loss(m["results"]) for m in members]
        mean, std = mean_std(losses)
        rows.append({"head": head, "exponent": n, "lr": lr, "min_lr": min_lr, "warmup_steps": warmup,
                     "seeds": len(losses), "seed_list": sorted(m["train"]["seed"] for m in members),
                     "val_loss_mean": mean, "val_loss_std": std, "val_losses": losses,
                     "tokens": members[0]["results"]["tokens"],
                     "seconds_mean": sum(m["results"]["seconds"] for m in members) / len(members),
                     })  # fmt: skip
    return rows


def table_rows(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of :func:`summary_rows` for printing."""
    headers = [
        "head",
        "exponent n",
        "lr (peak -> end)",
        "warmup",
        "seeds",
        "val loss (nats)",
        "tokens",
        "s per run",
    ]
    table = [
        [row["head"], "-" if row["exponent"] is None else f"{row['exponent']:g}",
         f"{row['lr']:g} -> {row['min_lr']:g}", str(row["warmup_steps"]), str(row["seeds"]),
         f"{row['val_loss_mean']:.4f} ± {row['val_loss_std']:.4f}" if row["seeds"] > 1
         else f"{row['val_loss_mean']:.4f}",
         f"{row['tokens']:,}", f"{row['seconds_mean']:.0f}"]
        for row in rows
    ]  # fmt: skip
    return headers, table


def save_records(runs: Sequence[str | Path], results_dir: str | Path) -> list[Path]:
    """Write each run directory's :func:`run_record` to ``results_dir/<name>.json``.

    The provenance is the one the run saved when it started, or, for a run
    that did not save one, taken now and marked ``taken_at_export``.
    """
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        if Path(run).is_file():
            continue  # already a record
        record = run_record(run)
        if "provenance" not in record:  # a run from before run.json kept it: say when it was exported
            record["provenance"] = exported_provenance()
        written.append(write_json_atomically(results_dir / f"{record['name']}.json", record, indent=1))
    return written
