"""``harmono finetune``, ``finetune sweep`` and ``finetune table``: thin wrappers over the finetuning code.

Every field of ``ClassifierConfig`` (except ``num_classes``, read from the
dataset) and of ``FinetuneConfig`` is an option. ``--config`` takes a JSON
file shaped like a run's ``run.json`` (``{"model": {...}, "train": {...}}``)
or the name of a built-in recipe (``RECIPES``); options typed on the command
line override it, and it overrides the configs' defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.models.classifier import ClassifierConfig
from harmono.recipes import read_recipe as read_config_file
from harmono.report.marked_sections import update_marked_sections
from harmono.report.text_table import format_table
from harmono.training.runs import process_group_from_environment

RECIPES = ("fashion-mnist-cpu", "resnet50-imagenet", "clip-vit-b32-imagenet")
"""Built-in ``--config`` recipes (``harmono/recipes/finetune-<name>.json``)."""
SWEEP_EXCLUDED = ("mono_lambda", "seed")


def read_recipe(name_or_path: str) -> dict:
    """``{"model": {...}, "train": {...}}`` of a built-in recipe or a JSON file (a ``run.json`` works)."""
    return read_config_file(
        name_or_path, "finetune", RECIPES, {"model": ClassifierConfig, "train": FinetuneConfig}
    )


def _num_classes(config: FinetuneConfig) -> int:
    from harmono.data.images import load_image_dataset

    return len(load_image_dataset(config.dataset, config.train_split).class_names)


def _configs(args: argparse.Namespace, **train_given) -> tuple[ClassifierConfig, FinetuneConfig]:
    """The configs of the typed options over those of ``--config`` over the defaults."""
    record = read_recipe(args.config) if args.config else {"model": {}, "train": {}}
    config = config_from_arguments(FinetuneConfig, args, base=record["train"], **train_given)
    model_config = config_from_arguments(
        ClassifierConfig, args, base=record["model"], num_classes=_num_classes(config)
    )
    return model_config, config


def _finetune(args: argparse.Namespace) -> int:
    from harmono.experiments.mono.finetune import finetune

    if not args.out:
        raise ValueError("harmono finetune needs --out RUN_DIRECTORY")
    model_config, config = _configs(args)
    with process_group_from_environment():
        result = finetune(
            model_config,
            config,
            args.out,
            progress=not args.no_progress,
            stop_after_steps=args.stop_after_steps,
        )
    metrics = result.metrics
    if not metrics:
        print(
            f"{args.out}: stopped after {args.stop_after_steps} of {result.steps} steps; run again to resume"
        )
        return 0
    print(
        f"{args.out}: {result.steps} steps in {result.seconds:.1f} s; validation accuracy "
        f"{metrics['val_accuracy']:.4f}, MonoScore {metrics['val_monoscore']:.4f} "
        f"({metrics['val_dead_units']} dead units); model saved in {Path(args.out) / 'model'}"
    )
    return 0


def sweep_table(rows: list[dict], markdown: bool = False) -> str:
    """Accuracy (%) and validation MonoScore as mean ± std over seeds, per MonoLoss weight."""
    table = [
        (
            f"{row['mono_lambda']:g}",
            row["runs"],
            f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}",
            f"{row['monoscore_mean']:.4f} ± {row['monoscore_std']:.4f}",
            f"{row['dead_units_mean']:.1f}",
            f"{row['seconds_mean']:.0f}",
        )
        for row in rows
    ]
    headers = ["λ", "seeds", "val accuracy (%)", "val MonoScore", "dead units", "s per run"]
    return format_table(headers, table, markdown=markdown)


def _sweep(args: argparse.Namespace) -> int:
    from harmono.experiments.mono.finetune_sweep import SWEEP_FILE, run_sweep, save_sweep_record

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    model_config, config = _configs(args, mono_lambda=0.0, seed=0)
    with process_group_from_environment():
        rows = run_sweep(
            model_config, config, args.mono_lambda, range(args.seeds), args.out, progress=not args.no_progress
        )
    print(sweep_table(rows))
    print(f"\nsweep: {Path(args.out) / SWEEP_FILE}")
    if args.results:
        print(f"record: {save_sweep_record(args.out, args.results)}")
    return 0


def _table(args: argparse.Namespace) -> int:
    from harmono.experiments.mono.finetune_sweep import SECTION, read_sweep_record, summarize_sweep

    table = sweep_table(summarize_sweep(read_sweep_record(args.record)["runs"]), markdown=True)
    print(table)
    for line in update_marked_sections(args.write or [], table, SECTION):
        print(line)
    return 0


def _add_common(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    parser.add_argument("--config", help=f"JSON file ({{'model': ..., 'train': ...}}) or a recipe: {RECIPES}")
    add_config_arguments(
        parser.add_argument_group("model"), ClassifierConfig, exclude=("num_classes",), layered=True
    )
    add_config_arguments(parser.add_argument_group("training"), FinetuneConfig, exclude=exclude, layered=True)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_finetune_command(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono finetune [sweep]`` to the top-level parser's subcommands ``sub``."""
    finetune = sub.add_parser(
        "finetune", help="finetune a classifier with MonoLoss on an intermediate layer (resumable, torchrun)"
    )
    finetune.add_argument("--out", help="run directory (an interrupted run is resumed); required")
    finetune.add_argument(
        "--stop-after-steps",
        type=int,
        default=0,
        help="stop after this many steps of the run (0: to the end)",
    )
    _add_common(finetune)
    finetune.set_defaults(func=_finetune)
    commands = finetune.add_subparsers(dest="finetune_command")
    sweep = commands.add_parser("sweep", help="finetune over MonoLoss weights and seeds; table of mean ± std")
    sweep.add_argument("--out", required=True, help="sweep directory (finished runs are reused)")
    sweep.add_argument(
        "--mono-lambda", type=float, nargs="+", default=[0.0, 0.03, 0.05, 0.07, 0.1],
        help="MonoLoss weights (default: the paper's 0 0.03 0.05 0.07 0.1)",
    )  # fmt: skip
    sweep.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per weight (default: 3)")
    sweep.add_argument(
        "--results", help="also copy the sweep's record into this folder (e.g. results/finetune)"
    )
    _add_common(sweep, exclude=SWEEP_EXCLUDED)
    sweep.set_defaults(func=_sweep)
    table = commands.add_parser("table", help="the Markdown table of a saved sweep record")
    table.add_argument("record", help="a sweep.json or its copy saved by `sweep --results`")
    table.add_argument("--write", nargs="+", help="files whose finetune-sweep markers to fill with the table")
    table.set_defaults(func=_table)
