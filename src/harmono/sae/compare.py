"""Evaluated SAE runs side by side: one table row per run, or per setting pooled over seeds.

Used by ``harmono sae compare`` and by the report's SAE tables. A run is a
run directory (``evaluation.json``, and ``run.json`` for harmono's own
SAEs) or the JSON record :func:`run_record` makes of one (``harmono sae
compare --results results/sae`` writes them, and the tables are made again
from those files alone).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from harmono.core.io import read_json, write_json_atomically
from harmono.core.provenance import exported_provenance
from harmono.sae.evaluate import EVALUATION_FILE
from harmono.training.runs import RUN_FILE

METRICS: tuple[tuple[str, Callable[[dict], float], str], ...] = (
    ("R2", lambda s: s["r2"], ".4f"),
    ("L0", lambda s: s["l0"], ".1f"),
    ("dead", lambda s: s["dead_fraction"], ".3f"),
    ("MonoScore", lambda s: s["mono"]["mean"], ".4f"),
    ("MonoScore (dead=0)", lambda s: s["mono"]["mean_dead_as_zero"], ".4f"),
    ("purity bin", lambda s: s["purity_binary"], ".3f"),
    ("purity wtd", lambda s: s["purity_weighted"], ".3f"),
)
"""Table columns: title, value in an evaluation summary, format."""
NOT_A_SETTING = ("seed", "device", "checkpoint_every", "log_every", "tensorboard")
"""Training fields that do not change what is trained: runs differing only in them pool over seeds."""


SECTION = "sae-compare"
"""The marked section ``harmono sae compare --write`` fills (:mod:`harmono.report.marked_sections`)."""


def _check_summary(summary: dict, path: Path) -> None:
    try:
        for _, get, _ in METRICS:
            get(summary)
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: expected a summary with every metric of the table, got none for {err}"
        ) from err


def _load_run(run: Path) -> tuple[dict, dict, str]:
    """``(evaluation summary, run record, name)`` of a run folder or a saved record.

    The record of a foreign SAE holds only what it is (``sae``); the name is
    the run folder's, or the one a saved record holds.
    """
    if run.is_file():  # a saved record
        record = read_json(run, "an SAE run record", ("summary",), ("summary", "sae", "train"))
        _check_summary(record["summary"], run)
        setup = {key: record[key] for key in ("sae", "train") if key in record}
        return record["summary"], setup, str(record.get("name", run.stem))
    if not run.is_dir():
        raise FileNotFoundError(
            f"{run}: expected an evaluated run directory or a record saved by `harmono sae compare "
            "--results`, found neither"
        )
    path = run / EVALUATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `harmono sae eval {run} --features PATH` first")
    evaluation = read_json(path, "an SAE evaluation", ("summary",), ("sae",))
    summary = evaluation["summary"]
    _check_summary(summary, path)
    if (run / RUN_FILE).is_file():
        return summary, read_json(run / RUN_FILE, "an SAE run record", objects=("sae", "train")), run.name
    described = evaluation.get("sae", {})
    if described.get("format", "harmono") != "harmono":  # another library's SAE: say whose
        described = {**described, "architecture": f"{described['format']}:{described.get('architecture')}"}
    return summary, {"sae": described} if described else {}, run.name


def _cell(values: list[float], spec: str) -> str:
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def compare_rows(runs: list[Path], pool_seeds: bool = False) -> list[tuple[str, ...]]:
    """One table row per run directory (its architecture, MonoLoss weight and evaluation summary).

    Parameters
    ----------
    runs : list of Path
        Run directories, each evaluated (holding ``evaluation.json``; ``run.json`` is optional: the
        evaluation of another library's SAE names its format and architecture), or records that
        :func:`save_records` wrote.
    pool_seeds : bool
        Runs whose settings differ only in the seed (and other fields in
        ``NOT_A_SETTING``) share one row: each metric as ``mean ± std``
        (sample standard deviation) over them, ``n`` the count, in the order
        of their first run.

    Returns
    -------
    list of tuple of str
        ``(run, architecture, mono_coef, n, *metrics)`` per row, the metrics in the order of ``METRICS``;
        ``run`` is the run's name (its folder's, or the saved record's), ``+k`` where ``k`` more pool in.

    Raises
    ------
    FileNotFoundError
        When a run has not been evaluated, or is neither a folder nor a record.
    """
    groups: dict[str, list[tuple[str, dict, dict]]] = {}
    for run in runs:
        summary, setup, name = _load_run(run)
        train = {k: v for k, v in setup.get("train", {}).items() if k not in NOT_A_SETTING}
        same_setting = pool_seeds and "train" in setup  # a run without run.json pools with nothing
        key = json.dumps({**setup, "train": train}, sort_keys=True) if same_setting else str(run)
        groups.setdefault(key, []).append((name, summary, setup))
    rows = []
    for members in groups.values():
        name, _, setup = members[0]
        label = name if len(members) == 1 else f"{name} (+{len(members) - 1})"
        cells = [_cell([get(summary) for _, summary, _ in members], spec) for _, get, spec in METRICS]
        architecture = setup.get("sae", {}).get("architecture", "?")
        mono_coef = f"{setup.get('train', {}).get('mono_coef', 0):g}"
        rows.append((label, architecture, mono_coef, str(len(members)), *cells))
    return rows


def run_record(run: str | Path) -> dict:
    """``{"name", "sae", "train", "summary", "provenance"}`` of an evaluated run directory.

    Only what the SAE is and how it trained is kept, not where its features
    lay (``run.json`` names their folder). The provenance is taken now and
    marked ``taken_at_export``: a run directory does not keep the commit it
    was trained at.
    """
    run = Path(run)
    summary, setup, _ = _load_run(run)
    described = {key: setup[key] for key in ("sae", "train") if key in setup}  # not the machine's paths
    return {"name": run.name, **described, "summary": summary, "provenance": exported_provenance()}


def save_records(runs: list[Path], results_dir: str | Path) -> list[Path]:
    """Write each run directory's :func:`run_record` to ``results_dir/<name>.json`` (records are skipped).

    Raises ``ValueError``, before writing anything, when two run directories share a name.
    """
    directories = [Path(run) for run in runs if not Path(run).is_file()]
    names = [run.name for run in directories]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"runs share the names {repeated}, and each record is named after its run: "
            "save them in separate calls with their own --results folders"
        )
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_json_atomically(results_dir / f"{run.name}.json", run_record(run), indent=1)
        for run in directories
    ]
