"""``harmono sae train | eval | compare``: thin wrappers over the library.

``train_sae``, ``evaluate_sae`` and ``compare_rows`` (:mod:`harmono.sae.compare`) do the work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.core.io import read_json
from harmono.report.text_table import format_table
from harmono.sae import ARCHITECTURES
from harmono.sae.compare import METRICS, compare_rows
from harmono.sae.config import SAEConfig
from harmono.sae.evaluate import EVALUATION_FILE, TOP_ACTIVATIONS_FILE, evaluate_sae
from harmono.sae.train import TrainConfig
from harmono.training.runs import RUN_FILE, process_group_from_environment


def _train(args: argparse.Namespace) -> int:
    from harmono.features import FeatureStore
    from harmono.sae.train import train_sae

    store = FeatureStore(args.features, verify="shape")
    embeddings = FeatureStore(args.embeddings, verify="shape") if args.embeddings else None
    sae_config = config_from_arguments(
        SAEConfig, args, architecture=args.arch, d_in=store.dim, input_scale=1.0
    )
    config = config_from_arguments(TrainConfig, args)
    with process_group_from_environment():
        result = train_sae(
            sae_config,
            config,
            store,
            args.out,
            embeddings=embeddings,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    loss, l0 = (result.last_metrics.get(name, float("nan")) for name in ("loss", "l0"))
    print(
        f"{args.out}: {result.steps} steps in {result.seconds:.1f} s; last loss {loss:.4g}, L0 {l0:.1f}; "
        f"SAE saved in {Path(args.out) / 'sae'}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from harmono.features import FeatureStore
    from harmono.sae.base import SAE

    run = Path(args.run)
    sae = SAE.from_pretrained(run / "sae")
    path = run / RUN_FILE
    train = read_json(path, "an SAE run record", ("train",), ("train",))["train"] if path.is_file() else {}
    store = FeatureStore(args.features, verify="shape")
    embeddings = FeatureStore(args.embeddings, verify="shape") if args.embeddings else None
    result = evaluate_sae(
        sae,
        store,
        batch_size=args.batch_size,
        l2_normalize=train.get("l2_normalize", True),
        embeddings=embeddings,
        table=run / EVALUATION_FILE,
        top_activations=run / TOP_ACTIVATIONS_FILE,
        progress=not args.no_progress,
    )
    print(json.dumps(result.as_dict(), indent=1))
    return 0


def _compare(args: argparse.Namespace) -> int:
    rows = compare_rows([Path(run) for run in args.runs], pool_seeds=args.pool_seeds)
    headers = ["run", "arch", "mono_coef", "n", *(title for title, _, _ in METRICS)]
    print(format_table(headers, rows, markdown=args.markdown))
    return 0


def add_sae_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono sae`` and its subcommands to the top-level parser."""
    sae = sub.add_parser("sae", help="train, evaluate and compare sparse autoencoders")
    commands = sae.add_subparsers(dest="sae_command", required=True)
    train = commands.add_parser("train", help="train an SAE on a feature store (resumable; torchrun for DDP)")
    train.add_argument("--features", required=True, help="feature store to train on")
    train.add_argument("--arch", required=True, choices=ARCHITECTURES, help="SAE architecture")
    train.add_argument("--out", required=True, help="run directory (an interrupted run is resumed)")
    train.add_argument(
        "--embeddings", help="store of MonoLoss embeddings, row-aligned (default: the SAE input)"
    )
    add_config_arguments(
        train.add_argument_group("SAE"), SAEConfig, exclude=("architecture", "d_in", "input_scale")
    )
    add_config_arguments(train.add_argument_group("training"), TrainConfig)
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch where --out holds another or a finished run, deleting its files "
        "(default: refuse such a folder)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)
    evaluate = commands.add_parser(
        "eval", help="R2, L0, dead, MonoScore and purity of a trained SAE on a store"
    )
    evaluate.add_argument("run", help="run directory written by `harmono sae train`")
    evaluate.add_argument("--features", required=True, help="feature store to evaluate on")
    evaluate.add_argument(
        "--embeddings", help="store of MonoScore embeddings, row-aligned (default: the SAE input)"
    )
    evaluate.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default: 4096)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(func=_evaluate)
    compare = commands.add_parser("compare", help="a table of the evaluations of several runs")
    compare.add_argument("runs", nargs="+", help="run directories, each evaluated with `harmono sae eval`")
    compare.add_argument(
        "--pool-seeds",
        action="store_true",
        help="one row per setting: mean ± std over the runs that differ only in their seed",
    )
    compare.add_argument("--markdown", action="store_true", help="print a Markdown table")
    compare.set_defaults(func=_compare)
