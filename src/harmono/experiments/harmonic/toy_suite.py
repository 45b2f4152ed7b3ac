"""Run directories for the toy experiments: one configuration, the suite, the paper's numbers.

A run directory holds ``results.json`` (configs, wall time, per-seed results
with ``ev_top2`` and the grokking epochs) and ``curves.safetensors``
(``train_acc``/``test_acc`` ``(S, E)``, ``embedding`` and ``output_centers``
``(S, V, D)``). A suite directory holds one run directory per task, architecture
and head (``<task>-<arch>-<head>``), written as each finishes: an
interrupted suite resumes from the first missing one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from harmono.analysis.toy_metrics import class_separation, median_range
from harmono.core import checks
from harmono.core.io import read_json, read_safetensors, write_atomically, write_json_atomically
from harmono.core.provenance import provenance
from harmono.data.toy import TASKS, WHOLE_TASKS, token_classes, toy_task
from harmono.experiments.harmonic.toy_tasks import (
    PAPER_SEEDS,
    ToyConfiguration,
    ToyRunResult,
    ToyTrainConfig,
    paper_epochs,
    paper_weight_decay,
    train_settings,
)
from harmono.experiments.harmonic.toy_training import train_toy_configs
from harmono.models.toy import ARCHITECTURES, HEADS, ToyModelConfig

RESULTS_FILE = "results.json"
CURVES_FILE = "curves.safetensors"
MODEL_NAMES = {
    ("mlp", "standard"): "standard MLP",
    ("mlp", "harmonic"): "harmonic MLP",
    ("transformer", "standard"): "standard transformer",
    ("transformer", "harmonic"): "harmonic transformer",
}
SUITE_ORDER = tuple((arch, head) for arch in ARCHITECTURES for head in HEADS)


def paper_configs(
    task: str, arch: str, head: str, **train_overrides: object
) -> tuple[ToyModelConfig, ToyTrainConfig]:
    """The official model and training settings for one configuration, with ``train_overrides`` applied."""
    spec = toy_task(task)
    model = ToyModelConfig(arch=arch, head=head, vocab_size=spec.vocab_size, seq_len=spec.seq_len)
    train = ToyTrainConfig(epochs=paper_epochs(task, arch), weight_decay=paper_weight_decay(arch))
    return model, replace(train, **train_overrides)


def save_run(result: ToyRunResult, out_dir: str | Path) -> Path:
    """Write ``result`` into ``out_dir`` (curves first, ``results.json`` last: it marks a finished run)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(result, name)))
        for name in ("train_acc", "test_acc", "embedding", "output_centers")
    }
    blob = save(tensors)
    write_atomically(out_dir / CURVES_FILE, lambda handle: handle.write(blob))
    return write_json_atomically(out_dir / RESULTS_FILE, result.record(), indent=1)


def load_run(run_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``results.json`` record and the arrays of ``curves.safetensors`` of a finished run."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no finished toy run: expected {path}")
    record = read_json(path, "a toy run record")
    arrays = {name: t.numpy() for name, t in read_safetensors(run_dir / CURVES_FILE)[0].items()}
    return record, arrays


def embedding_clusters(run_dir: str | Path) -> tuple[tuple[float, float, float], np.ndarray]:
    """How tightly a finished run's token embeddings cluster by class, over its seeds.

    Parameters
    ----------
    run_dir : str or Path
        A finished run of a task whose tokens fall into classes (the equivalence task: numbers mod 5).

    Returns
    -------
    (ratio, spectrum)
        ``ratio``: the median, min and max over seeds of the within / between class distance of
        :func:`harmono.analysis.toy_metrics.class_separation`. ``spectrum``: the median over seeds of the
        explained variance ratios of the class means (the ``C - 1`` largest, ``C`` the classes).

    Raises
    ------
    ValueError
        When the run's task has no token classes.
    """
    record, arrays = load_run(run_dir)
    task = toy_task(record["task"])
    classes = token_classes(task)
    measured = [class_separation(e[list(task.analysed_tokens)], classes) for e in arrays["embedding"]]
    ratio = median_range([r for r, _ in measured])
    spectrum = np.median(np.stack([s[: len(np.unique(classes)) - 1] for _, s in measured]), axis=0)
    return ratio, spectrum


def _wanted(task: str, model: ToyModelConfig, train: ToyTrainConfig, seeds: Sequence[int]) -> dict:
    return {"task": task, "model": asdict(model), "train": asdict(train), "seeds": [int(s) for s in seeds]}


def _finished_record(path: Path, wanted: dict) -> dict | None:
    """The record in ``path`` if it has exactly the ``wanted`` settings; ``None`` if there is no file.

    ``path`` is a run directory's ``results.json`` or a committed
    ``results/toy/<name>.json``. A record with other settings is an error,
    so that results of different settings never mix and no record is
    overwritten.
    """
    if not path.is_file():
        return None
    record = read_json(path, "a toy run record", ("task", "model", "train", "seeds"))
    found = {"task": record["task"], "model": record["model"], "train": train_settings(record["train"])}
    try:
        found["seeds"] = [s["seed"] for s in record["seeds"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected per-seed records with a 'seed', got the error {err!r}") from err
    if found != wanted:
        raise ValueError(f"{path} holds a run with other settings ({found}); expected {wanted}")
    return record


def results_record(record: dict, origin: dict | None = None) -> dict:
    """A run's record as committed under ``results/toy/``: the record, the protocol and its provenance.

    ``origin`` is the :func:`~harmono.core.provenance.provenance` taken
    when the training started (default: now).
    """
    return {
        **record,
        "protocol": "official code's toy protocol (harmono.experiments.harmonic.toy_suite.paper_configs) "
        "with the overrides in 'model' and 'train'",
        "provenance": origin or provenance(),
    }


def run_stack(
    task: str,
    arch: str,
    variants: Sequence[tuple[str, str, dict, dict]],
    out_dir: str | Path,
    seeds: Sequence[int] = PAPER_SEEDS,
    progress: bool = True,
    device: str | torch.device = "cpu",
    results_dir: str | Path | None = None,
) -> list[dict]:
    """Train (or reuse) several configurations of one task and architecture together.

    Parameters
    ----------
    task, arch : str
        The task and the architecture every variant shares.
    variants : sequence of (name, head, model_overrides, train_overrides)
        One configuration each: the official settings (:func:`paper_configs`)
        with the overrides, in ``out_dir/<name>``.
    out_dir : str or Path
        Holds one run directory per variant and the stack's checkpoint
        ``stack-<digest>.safetensors``: the state to resume from while it
        trains, every model's final state afterwards (``harmono toy
        dropout-gap`` reads it).
    seeds : sequence of int
        The seeds of every variant.
    progress : bool
        Show a tqdm bar.
    device : str or torch.device
        Where to train.
    results_dir : str or Path, optional
        Also write each newly finished variant's :func:`results_record` to
        ``results_dir/<name>.json`` (the committed results); a variant whose
        record is there already counts as finished, even without its run
        directory.

    Returns
    -------
    list of dict
        The record of each variant, in order. Finished variants with the same
        settings are reused; the missing ones train in one stack.
    """
    out_dir = Path(out_dir)
    planned = []
    for name, head, model_overrides, train_overrides in variants:
        model, train = paper_configs(task, arch, head, **train_overrides)
        model = replace(model, **model_overrides)
        run_dir = out_dir / name
        planned.append((name, run_dir, ToyConfiguration(model, train, tuple(seeds))))
    records = {}
    for name, run_dir, c in planned:
        wanted = _wanted(task, c.model, c.train, seeds)
        records[name] = _finished_record(run_dir / RESULTS_FILE, wanted)
        if records[name] is None and results_dir is not None:
            records[name] = _finished_record(Path(results_dir) / f"{name}.json", wanted)
    missing = [(name, run_dir, c) for name, run_dir, c in planned if records[name] is None]
    if missing:
        # a task used whole (WHOLE_TASKS) trains the same models on either sampling: train them once
        trained_as = [_sampling_free(task, c) for _, _, c in missing]
        configurations = list(dict.fromkeys(trained_as))
        digest = hashlib.sha1(
            json.dumps([task, *(c.record() for c in configurations)], sort_keys=True).encode()
        ).hexdigest()[:12]
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = out_dir / f"stack-{digest}.safetensors"
        origin = provenance()
        trained = train_toy_configs(toy_task(task), configurations, progress, device, checkpoint=checkpoint)
        by_configuration = dict(zip(configurations, trained, strict=True))
        for (name, run_dir, c), key in zip(missing, trained_as, strict=True):
            result = replace(by_configuration[key], train=c.train)
            save_run(result, run_dir)
            records[name] = result.record()
            if results_dir is not None:
                Path(results_dir).mkdir(parents=True, exist_ok=True)
                write_json_atomically(
                    Path(results_dir) / f"{name}.json", results_record(records[name], origin), indent=1
                )
    return [records[name] for name, _, _ in planned]


def _sampling_free(task: str, configuration: ToyConfiguration) -> ToyConfiguration:
    """``configuration`` as it trains: for a task used whole, the sampling is moot (leak-free).

    Not so for the official draws, whose split of a whole task is the official code's own.
    """
    train = configuration.train
    if task not in WHOLE_TASKS or not train.paper_sampling or train.official_draws:
        return configuration
    return replace(configuration, train=replace(configuration.train, paper_sampling=False))


def is_sampling_twin(record: dict) -> bool:
    """Whether a record is the paper-sampling run of a task used whole (the models of its leak-free twin)."""
    train = train_settings(record["train"])
    return record["task"] in WHOLE_TASKS and train["paper_sampling"] and not train["official_draws"]


def training_seconds(records: Sequence[dict]) -> float:
    """Wall time of the training behind ``records``, each twin trained once (:func:`_sampling_free`) once."""

    def key(record: dict) -> str:
        train = {**record["train"], "paper_sampling": False}
        return json.dumps([record["task"], record["model"], train], sort_keys=True)

    leak_free = {key(r) for r in records if not r["train"]["paper_sampling"]}
    return sum(r["seconds"] for r in records if not (is_sampling_twin(r) and key(r) in leak_free))


def run_config(
    task: str,
    arch: str,
    head: str,
    out_dir: str | Path,
    seeds: Sequence[int] = PAPER_SEEDS,
    progress: bool = True,
    model_overrides: dict | None = None,
    device: str | torch.device = "cpu",
    **train_overrides: object,
) -> dict:
    """Train (or reuse) one configuration in ``out_dir`` and return its record (see :func:`run_stack`)."""
    out_dir = Path(out_dir)
    variant = (out_dir.name, head, model_overrides or {}, train_overrides)
    return run_stack(task, arch, [variant], out_dir.parent, seeds, progress, device)[0]


SAMPLINGS = ("leak-free", "paper")
"""Splits: drawn without replacement, or with replacement as the official code (``paper_sampling``)."""
DEFAULT_EXPONENT = ToyModelConfig.exponent


def suite_variants(
    task: str,
    arch: str,
    heads: Sequence[str] = HEADS,
    samplings: Sequence[str] = ("leak-free",),
    exponents: Sequence[float] = (DEFAULT_EXPONENT,),
    fractions: Sequence[float | None] = (None,),
) -> list[tuple[str, str, dict, dict]]:
    """The ``run_stack`` variants of one task and architecture: heads x samplings x exponents x fractions.

    Exponents apply to the harmonic head only (the standard head gets one
    variant per sampling and fraction).
    """
    variants = []
    for head in heads:
        for sampling in samplings:
            checks.require_choice("sampling", sampling, SAMPLINGS)
            for exponent in exponents if head == "harmonic" else (DEFAULT_EXPONENT,):
                for fraction in fractions:
                    train: dict = {"paper_sampling": sampling == "paper"}  # the sampling named wins
                    if fraction is not None:
                        train["train_fraction"] = fraction
                    model = {} if exponent == DEFAULT_EXPONENT else {"exponent": float(exponent)}
                    name = run_name(task, arch, head, sampling, exponent, fraction)
                    variants.append((name, head, model, train))
    return variants


def run_suite(
    out_dir: str | Path,
    tasks: Sequence[str] = TASKS,
    archs: Sequence[str] = ARCHITECTURES,
    seeds: Sequence[int] = PAPER_SEEDS,
    progress: bool = True,
    device: str | torch.device = "cpu",
    heads: Sequence[str] = HEADS,
    samplings: Sequence[str] = ("leak-free",),
    exponents: Sequence[float] = (DEFAULT_EXPONENT,),
    results_dir: str | Path | None = None,
    **train_overrides: object,
) -> list[dict]:
    """Every task x architecture x head x sampling x exponent into ``out_dir/<run_name>``, resuming.

    The configurations of one task and architecture train as one stack
    (:func:`run_stack`); ``train_overrides`` apply to all of them.
    """
    records = []
    for task in tasks:
        for arch in ARCHITECTURES:
            if arch not in archs:
                continue
            variants = [
                (name, head, model, {**train_overrides, **train})
                for name, head, model, train in suite_variants(task, arch, heads, samplings, exponents)
            ]
            records += run_stack(task, arch, variants, out_dir, seeds, progress, device, results_dir)
    return records


def run_name(
    task: str,
    arch: str,
    head: str,
    sampling: str = "leak-free",
    exponent: float | None = None,
    fraction: float | None = None,
) -> str:
    """A run's directory name inside a suite: ``<task>-<arch>-<head>[-n<exponent>][-f<fraction>][-paper]``.

    The exponent shows when it is not the default 2, the fraction when
    given, ``-paper`` for the official sampling.
    """
    name = f"{task}-{arch}-{head}"
    if exponent is not None and exponent != DEFAULT_EXPONENT:
        name += f"-n{exponent:g}"
    if fraction is not None:
        name += f"-f{fraction:g}"
    return name + ("-paper" if sampling == "paper" else "")


def record_sampling(record: dict) -> str:
    """``"paper"`` or ``"leak-free"``: the sampling of a run's record."""
    return "paper" if record["train"]["paper_sampling"] else "leak-free"


def record_run_name(record: dict) -> str:
    """The :func:`run_name` of a suite run (train fraction default) from its record."""
    model = record["model"]
    return run_name(record["task"], model["arch"], model["head"], record_sampling(record), model["exponent"])


def model_label(arch: str, head: str, sampling: str, exponent: float = DEFAULT_EXPONENT) -> str:
    """A figure or curve label: the model, and its exponent and sampling where not the default."""
    label = MODEL_NAMES[(arch, head)]
    if head == "harmonic" and exponent != DEFAULT_EXPONENT:
        label += f", n={exponent:g}"
    return label + (", paper sampling" if sampling == "paper" else "")


def record_label(record: dict) -> str:
    """The :func:`model_label` of a run's record."""
    model = record["model"]
    return model_label(model["arch"], model["head"], record_sampling(record), model["exponent"])


def suite_figures(
    out_dir: str | Path, records: Sequence[dict], run_dirs: Sequence[Path] | None = None
) -> list[Path]:
    """EV curves, grokking scatter and 2-D PCA of each model's embedding (median-EV seed), into ``out_dir``.

    ``run_dirs`` (default ``out_dir/<run_name>`` each) locate the runs' curves.
    """
    from harmono.analysis.toy_figures import plot_embedding_pca, plot_ev_curves, plot_grokking

    out_dir = Path(out_dir)
    run_dirs = run_dirs or [out_dir / record_run_name(r) for r in records]
    ev: dict[str, dict[str, np.ndarray]] = {}
    grokking: dict[str, dict[str, list]] = {}
    panels = []
    for record, run_dir in zip(records, run_dirs, strict=True):
        task, name = record["task"], record_label(record)
        seeds = record["seeds"]
        ev.setdefault(task, {})[name] = np.array([s["ev_ratios"] for s in seeds])
        grokking.setdefault(task, {})[name] = [(s["train_epoch"], s["test_epoch"]) for s in seeds]
        _, arrays = load_run(run_dir)
        median_seed = int(np.argsort([s["ev_top2"] for s in seeds])[len(seeds) // 2])
        spec = toy_task(task)
        rows = arrays["embedding"][median_seed][list(spec.analysed_tokens)]
        labels = [spec.token_names[t] for t in spec.analysed_tokens]
        panels.append((f"{task} / {name}", rows, labels))
    return [
        plot_ev_curves(
            ev, out_dir / "ev_curves.png", title="cumulative PCA explained variance of the embeddings"
        ),
        plot_grokking(
            grokking, out_dir / "grokking.png", title="first epoch > 0.9 for 20 epochs: train vs test"
        ),
        plot_embedding_pca(
            panels, out_dir / "embeddings_pca.png", title="2-D PCA of the embeddings (median-EV seed)"
        ),
    ]
