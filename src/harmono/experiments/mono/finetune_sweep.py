"""A sweep of finetuning runs over MonoLoss weights and seeds, summarised per weight.

Runs go to ``out/lambda-<λ>/seed-<s>/``; a finished run with the same
settings is read back instead of trained again, an unfinished one resumes,
and one with other settings is refused. ``sweep.json`` holds every run's
results, the summary rows (mean and sample standard deviation over seeds)
and the provenance; ``harmono finetune sweep --results results/finetune``
copies it to ``results/finetune/<sweep name>.json``, and ``harmono finetune
table`` makes the guide's table again from that file alone.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from harmono.core.io import read_json, write_json_atomically
from harmono.core.provenance import exported_provenance, provenance
from harmono.experiments.mono.finetune import finetune
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.experiments.mono.finetune_eval import read_results
from harmono.models.classifier import ClassifierConfig
from harmono.training.runs import RUN_FILE

SWEEP_FILE = "sweep.json"
SECTION = "finetune-sweep"
"""Name of the marked section ``harmono finetune table --write`` fills."""
RUN_FIELDS = ("mono_lambda", "seed", "val_accuracy", "val_monoscore", "val_dead_units", "seconds")
"""What the summary reads of each run of a sweep record."""
PAPER_LAMBDAS = (0.0, 0.03, 0.05, 0.07, 0.1)
"""The MonoLoss paper's finetuning weights."""


def run_directory(out: str | Path, mono_lambda: float, seed: int) -> Path:
    """Where the run of ``mono_lambda`` and ``seed`` lives."""
    return Path(out) / f"lambda-{mono_lambda:g}" / f"seed-{seed}"


def _finished(directory: Path, model_config: ClassifierConfig, config: FinetuneConfig) -> dict | None:
    results = read_results(directory)
    if results is None:
        return None
    saved = read_json(directory / RUN_FILE, "a finetune run record", ("model", "train"))
    wanted = json.loads(json.dumps({"model": asdict(model_config), "train": asdict(config)}))
    for key in ("model", "train"):
        if {**saved[key], "device": None} != {**wanted[key], "device": None}:
            raise ValueError(
                f"{directory} holds a finished run with another {key} ({saved[key]}); "
                "sweep into another directory"
            )
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_sweep(runs: list[dict]) -> list[dict]:
    """One row per ``mono_lambda``: run count, accuracy and MonoScore mean and std, seconds per run."""
    rows = []
    for mono_lambda in sorted({run["mono_lambda"] for run in runs}):
        mine = [run for run in runs if run["mono_lambda"] == mono_lambda]
        accuracy = _mean_std([run["val_accuracy"] for run in mine])
        score = _mean_std([run["val_monoscore"] for run in mine])
        dead = statistics.fmean(run["val_dead_units"] for run in mine)
        seconds = statistics.fmean(run["seconds"] for run in mine)
        rows.append({"mono_lambda": mono_lambda, "runs": len(mine), "accuracy_mean": accuracy[0],
                     "accuracy_std": accuracy[1], "monoscore_mean": score[0], "monoscore_std": score[1],
                     "dead_units_mean": dead, "seconds_mean": seconds})  # fmt: skip
    return rows


def run_sweep(
    model_config: ClassifierConfig,
    config: FinetuneConfig,
    lambdas: Sequence[float],
    seeds: Sequence[int],
    out: str | Path,
    progress: bool = True,
) -> list[dict]:
    """Finetune every ``(mono_lambda, seed)`` pair (``config`` gives the rest); return the summary rows.

    Parameters
    ----------
    model_config : ClassifierConfig
    config : FinetuneConfig
        Settings shared by every run (its ``mono_lambda`` and ``seed`` are replaced).
    lambdas : sequence of float
        MonoLoss weights (e.g. ``PAPER_LAMBDAS``).
    seeds : sequence of int
    out : str or Path
        Sweep directory.
    progress : bool
        Progress bars of the runs.
    """
    if not lambdas or not seeds:
        raise ValueError(f"expected at least one weight and one seed, got {list(lambdas)} and {list(seeds)}")
    runs, trained = [], 0
    for mono_lambda in lambdas:
        for seed in seeds:
            run_config = replace(config, mono_lambda=float(mono_lambda), seed=int(seed))
            directory = run_directory(out, mono_lambda, seed)
            results = _finished(directory, model_config, run_config)
            if results is None:
                finetune(model_config, run_config, directory, progress=progress)
                results, trained = read_results(directory), trained + 1
            runs.append({"mono_lambda": float(mono_lambda), "seed": int(seed), **results})
    rows = summarize_sweep(runs)
    record = {"model": asdict(model_config), "train": asdict(config), "runs": runs, "rows": rows,
              "provenance": provenance() if trained else _earlier_provenance(Path(out))}  # fmt: skip
    write_json_atomically(Path(out) / SWEEP_FILE, record, indent=1)
    return rows


def _earlier_provenance(out: Path) -> dict:
    """The provenance a sweep that trained nothing keeps: the earlier ``sweep.json``'s, or today's, marked."""
    earlier = out / SWEEP_FILE
    if earlier.is_file():
        saved = read_json(earlier, "a finetune sweep record")
        if isinstance(saved.get("provenance"), dict):
            return saved["provenance"]
    return exported_provenance()


def _without_local_paths(config: dict) -> dict:
    """``config`` with each absolute path (after a ``folder:`` prefix) cut to ``<local>/`` and its name."""
    kept = {}
    for key, value in config.items():
        if isinstance(value, str):
            prefix = "folder:" if value.startswith("folder:") else ""
            path = Path(value[len(prefix) :])
            if path.is_absolute():
                value = f"{prefix}<local>/{path.name}"
        kept[key] = value
    return kept


def read_sweep_record(path: str | Path) -> dict:
    """A sweep's record (``sweep.json`` or a saved copy), checked to give its table.

    Raises ``ValueError`` naming the file and the run that lacks a field the summary reads.
    """
    record = read_json(path, "a finetune sweep record", ("model", "train", "runs"), ("model", "train"))
    runs = record["runs"]
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: expected runs to list at least one run, got {runs!r}")
    for index, run in enumerate(runs):
        missing = [field for field in RUN_FIELDS if not isinstance(run, dict) or field not in run]
        if missing:
            raise ValueError(f"{path}: expected run {index} to hold {list(RUN_FIELDS)}, it lacks {missing}")
    return record


def save_sweep_record(out: str | Path, results_dir: str | Path) -> Path:
    """Copy the sweep's record to ``results_dir/<name of out>.json``, without the machine's paths.

    An absolute path in the model or training settings (a local dataset
    folder, a reference store) keeps only its last part, after ``<local>/``.
    """
    record = read_sweep_record(Path(out) / SWEEP_FILE)
    record = {**record, "model": _without_local_paths(record["model"]),
              "train": _without_local_paths(record["train"])}  # fmt: skip
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    return write_json_atomically(results_dir / f"{Path(out).name}.json", record, indent=1)
