"""``harmono mnist``: the harmonic-loss paper's linear prototypes on MNIST or Fashion-MNIST."""

from __future__ import annotations

import argparse
from pathlib import Path

from harmono.analysis.toy_metrics import mean_std
from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.experiments.harmonic.mnist_linear import (
    CENTERS_FILE,
    FIGURE_FILE,
    RESULTS_FILE,
    MnistLinearConfig,
    MnistLinearResult,
    run_mnist_linear,
)
from harmono.experiments.harmonic.mnist_summary import SECTION, save_record, summary_rows
from harmono.report.marked_sections import update_marked_sections
from harmono.report.text_table import format_table


def _cell(values: tuple[float, ...], scale: float, digits: int) -> str:
    """``mean ± std`` of ``scale * values`` (just the mean for one value)."""
    mean, std = mean_std(values)
    return f"{scale * mean:.{digits}f}" + ("" if len(values) == 1 else f" ± {scale * std:.{digits}f}")


def mnist_table(result: MnistLinearResult) -> str:
    """Per head: test accuracy (%) as mean ± sample std over the seeds, each seed's, and the train loss."""
    rows = [
        (
            head,
            _cell(outcome.test_accuracy, 100, 2),
            " ".join(f"{100 * accuracy:.2f}" for accuracy in outcome.test_accuracy),
            _cell(outcome.train_loss, 1, 4),
        )
        for head, outcome in result.heads.items()
    ]
    return format_table(["head", "test accuracy (%)", "per seed (%)", "train loss"], rows)


def _summary(args: argparse.Namespace) -> int:
    if args.results:
        raise ValueError("--results saves a new run's record: use it with --out, not with --summary")
    table = format_table(*summary_rows(args.summary), markdown=True)
    print(table)
    for line in update_marked_sections(args.write or [], table, SECTION):
        print(line)
    return 0


def _mnist(args: argparse.Namespace) -> int:
    if args.summary:
        return _summary(args)
    if args.write:
        raise ValueError("--write fills a table from saved records: use it with --summary, not with --out")
    config = config_from_arguments(MnistLinearConfig, args)
    result = run_mnist_linear(config, args.out, progress=not args.no_progress)
    print(
        f"\n{config.dataset}: one linear layer 784 -> 10, {config.seeds} seed(s) x {config.epochs} epochs, "
        f"{result.train_size} training / {result.test_size} test images, {result.seconds:.1f} s"
    )
    print(mnist_table(result))
    out = Path(args.out)
    print(f"\nresults: {out / RESULTS_FILE}\ncenters: {out / CENTERS_FILE}\nfigure: {out / FIGURE_FILE}")
    if args.results:
        print(f"record: {save_record(out, args.results)}")
    return 0


def add_mnist_command(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono mnist`` to the top-level parser's subcommands ``sub``."""
    mnist = sub.add_parser(
        "mnist",
        help="linear class prototypes: one 784 -> 10 layer, harmonic head vs cross-entropy, over seeds",
    )
    mode = mnist.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", help="output directory (results.json, centers, figure)")
    mode.add_argument(
        "--summary", nargs="+", metavar="RECORD",
        help="instead of training: the table of saved records or run directories "
        "(e.g. results/mnist/*.json); the experiment options are not read",
    )  # fmt: skip
    mnist.add_argument(
        "--results", help="also save the run's record as RESULTS/<dataset>.json (e.g. results/mnist)"
    )
    mnist.add_argument("--write", nargs="+", help="with --summary: files whose mnist-linear markers to fill")
    add_config_arguments(mnist.add_argument_group("experiment"), MnistLinearConfig)
    mnist.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mnist.set_defaults(func=_mnist)
