"""``harmono lm monosemanticity | table``: the language-model monosemanticity experiment and its table."""

from __future__ import annotations

import argparse
from pathlib import Path

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.core.io import write_json_atomically
from harmono.experiments.lm.monosemanticity import LMMonoConfig
from harmono.experiments.lm.tables import SECTION, lm_table, read_records
from harmono.recipes import read_recipe
from harmono.report.marked_sections import update_marked_section

RECIPES = ("gpt2-small-owt",)
"""Built-in ``--config`` protocols (``harmono/recipes/lm-<name>.json``): GPT-2 small on a GPU."""


def _monosemanticity(args: argparse.Namespace) -> int:
    from harmono.experiments.lm.monosemanticity import classifier_record, is_classifier_run, measure_model

    protocol = read_lm_recipe(args.config)["protocol"] if args.config else {}
    layers = args.layers or protocol.get("layers") or LMMonoConfig.layers
    config = config_from_arguments(LMMonoConfig, args, base=protocol, layers=tuple(layers))
    for run in args.runs:
        name = Path(run).name
        if is_classifier_run(run):  # a finetuned classifier: its penultimate units, measured already
            record, name = classifier_record(run), f"classifier-{name}"
        else:
            record = measure_model(run, args.corpus, Path(args.out) / name, args.seed, config,
                                   shared=args.out, progress=not args.no_progress)  # fmt: skip
        if args.results:
            Path(args.results).mkdir(parents=True, exist_ok=True)
            write_json_atomically(Path(args.results) / f"{name}.json", record, indent=1)
        print(f"{name}: measured blocks {sorted(record['layers'])}")
    return 0


def read_lm_recipe(name_or_path: str) -> dict:
    """``{"protocol": {...}}`` of a built-in recipe (``harmono/recipes/lm-<name>.json``) or a JSON file."""
    return read_recipe(name_or_path, "lm", RECIPES, {"protocol": LMMonoConfig})


def _table(args: argparse.Namespace) -> int:
    table = lm_table(read_records(args.results))
    for path in args.write or ():
        changed = update_marked_section(path, table, SECTION)
        print(f"{path}: {'updated' if changed else 'unchanged'}")
    if not args.write:
        print(table)
    return 0


def add_lm_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono lm`` and its subcommands to the top-level parser's subcommands ``sub``."""
    lm = sub.add_parser("lm", help="language models: is a harmonic-loss GPT more monosemantic?")
    commands = lm.add_subparsers(dest="lm_command", required=True)
    run = commands.add_parser(
        "monosemanticity", help="MonoScore of a GPT's MLP neurons and of SAEs on them, CE loss recovered"
    )
    run.add_argument(
        "runs", nargs="+", help="`harmono gpt train` run folders (or finished `harmono finetune` runs)"
    )
    run.add_argument(
        "--corpus", required=True, help="the corpus they were trained on (`harmono gpt prepare`)"
    )
    run.add_argument("--out", required=True, help="working folder (stores, SAE runs); resumed")
    run.add_argument("--results", help="write one record per run here (e.g. results/lm)")
    run.add_argument("--seed", type=int, default=0, help="seed of the SAEs (default: 0)")
    run.add_argument(
        "--config",
        help=f"a protocol recipe {RECIPES} or a JSON file ({{'protocol': ...}}); options given override it",
    )
    protocol = run.add_argument_group("protocol (default: the CPU Shakespeare protocol)")
    protocol.add_argument("--layers", type=int, nargs="+", help="blocks measured (default: 1 3)")
    add_config_arguments(protocol, LMMonoConfig, exclude=("layers",), layered=True)
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(func=_monosemanticity)
    table = commands.add_parser("table", help="the experiment's table from its records")
    table.add_argument("results", help="folder of records (results/lm)")
    table.add_argument("--write", nargs="+", help="files whose marked section gets the table")
    table.set_defaults(func=_table)
