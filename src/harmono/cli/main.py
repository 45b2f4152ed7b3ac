"""The ``harmono`` command.

Thin by design: it parses arguments into the library's config dataclasses,
calls the experiment functions and presents what they return.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.core.version import __version__
from harmono.experiments.harmonic.points import ToyPointsConfig
from harmono.experiments.mono.cluster_latents import MonoToyConfig
from harmono.report.text_table import format_table


def _print_claims(claims: Sequence[tuple[str, bool]]) -> None:
    for text, holds in claims:
        print(f"[{'holds' if holds else 'DOES NOT HOLD'}] {text}")


def _stored_claims(summary: dict) -> list[tuple[str, bool]]:
    return [(claim["text"], claim["holds"]) for claim in summary["claims"]]


def _print_demo_summary(outcome, mono_config: MonoToyConfig) -> None:
    from harmono.report import demo_tables

    steps = outcome.summaries
    if "toy-points" in steps:
        print("\nHarmonic loss, 2-D toy cases (paper Fig. 1): harmonic head vs linear head + SoftMax")
        print(format_table(*demo_tables.toy_points_rows(steps["toy-points"])))
        _print_claims(_stored_claims(steps["toy-points"]))
    if "mono-toy" in steps:
        result = steps["mono-toy"]["result"]
        print(
            f"\nMonoScore of synthetic latents on {mono_config.clusters} embedding clusters (within-cluster "
            f"similarity {result['within_similarity']:.3f}, whole set {result['mean_similarity']:.3f})"
        )
        print(format_table(*demo_tables.mono_toy_rows(steps["mono-toy"])))
        _print_claims(_stored_claims(steps["mono-toy"]))
    if "toy-suite" in steps:
        print("\nHarmonic loss, modular addition and the lattice: MLP embeddings, standard vs harmonic head")
        print(format_table(*demo_tables.suite_summary_rows(steps["toy-suite"])))
        _print_claims(demo_tables.suite_claims(steps["toy-suite"]))
    if "prototypes" in steps:
        print("\nHarmonic loss, Fashion-MNIST: one linear layer, cross-entropy vs harmonic (seed 0)")
        print(format_table(*demo_tables.prototype_rows(steps["prototypes"])))
    if "sae" in steps:
        print("\nMonoLoss: BatchTopK SAEs on EfficientNet-Lite0 features of Fashion-MNIST (test images)")
        print(format_table(*demo_tables.sae_rows(steps["sae"])))
        _print_claims(demo_tables.sae_claims(steps["sae"]))
    for name, why in outcome.skipped.items():
        print(f"\nskipped {name}: {why}")


def _demo(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from harmono.experiments.demo import QUICK_DEMO, QUICK_TOY_POINTS, DemoConfig, run_demo

    config = config_from_arguments(DemoConfig, args, base=asdict(QUICK_DEMO) if args.quick else None)
    toy_config = config_from_arguments(ToyPointsConfig, args, prefix="toy")
    if args.quick and not hasattr(args, "toy_steps"):
        toy_config = replace(toy_config, **QUICK_TOY_POINTS)
    mono_config = config_from_arguments(MonoToyConfig, args, prefix="mono")
    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    command = "harmono demo" + (" --quick" if args.quick else "") + (f" --out {args.out}" if args.out else "")
    outcome = run_demo(out, config, toy_config, mono_config, progress=not args.no_progress,
                       report=not args.no_report, command=command)  # fmt: skip
    _print_demo_summary(outcome, mono_config)
    reused = f" ({len(outcome.reused)} finished steps reused)" if outcome.reused else ""
    print(f"\ndemo finished in {outcome.seconds:.0f} s{reused}; everything is in {out}/")
    if not args.no_report:
        print(f"report: {out}/report.html (open it in a browser)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from harmono.report.build import write_report

    path = write_report(args.run, args.out, args.features)
    print(f"report: {path}")
    if args.screenshot:
        from harmono.report.screenshot import screenshot

        print(f"screenshot: {screenshot(path, args.screenshot)}")
    return 0


def _add_demo_and_report_commands(sub: argparse._SubParsersAction) -> None:
    from harmono.experiments.demo import DemoConfig

    demo = sub.add_parser(
        "demo",
        help="both papers' claims on a laptop: toy tasks, prototypes, SAEs with MonoLoss, an HTML report",
    )
    demo.add_argument("--out", help="output directory (default: runs/demo, or runs/demo-quick with --quick)")
    demo.add_argument(
        "--quick", action="store_true", help="every step, smaller: under 2 minutes on 2 CPU cores"
    )
    demo.add_argument("--no-report", action="store_true", help="do not write report.html")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_config_arguments(demo.add_argument_group("demo steps"), DemoConfig, layered=True)
    add_config_arguments(demo.add_argument_group("toy cases"), ToyPointsConfig, prefix="toy", layered=True)
    add_config_arguments(demo.add_argument_group("MonoScore toy"), MonoToyConfig, prefix="mono")
    demo.set_defaults(func=_demo)
    report = sub.add_parser(
        "report",
        help="a static HTML report (figures, tables, latent browser) of a demo, SAE run or toy suite",
    )
    report.add_argument("run", help="a demo directory, an evaluated SAE run, or a toy run or suite directory")
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.add_argument("--features", help="SAE runs: the evaluated feature store, if it moved")
    report.add_argument("--screenshot", help="also save a PNG screenshot (needs playwright and Chromium)")
    report.set_defaults(func=_report)


def _features_extract(args: argparse.Namespace) -> int:
    from harmono.features.extract import ExtractConfig, extract_from_config

    config = config_from_arguments(ExtractConfig, args)
    report = extract_from_config(config, args.out, progress=not args.no_progress)
    rate = report.extracted / report.seconds if report.seconds > 0 else 0.0
    print(
        f"{report.store}: encoded {report.extracted} samples in {report.seconds:.1f} s ({rate:.1f} img/s), "
        f"{report.skipped} were stored already"
    )
    return 0


def _features_info(args: argparse.Namespace) -> int:
    import json

    from harmono.features import FeatureStore
    from harmono.features.extract import store_summary

    print(json.dumps(store_summary(FeatureStore(args.path, verify=args.verify)), indent=1))
    return 0


def _features_probe(args: argparse.Namespace) -> int:
    from harmono.analysis.probe import probe_stores
    from harmono.features import FeatureStore

    train, test = FeatureStore(args.train, verify="shape"), FeatureStore(args.test, verify="shape")
    result = probe_stores(train, test)
    print(
        f"linear probe on {len(train)} x {train.dim} features: train accuracy {result.train_accuracy:.4f}, "
        f"test accuracy {result.test_accuracy:.4f} ({len(test)} samples)"
    )
    return 0


def _add_features_commands(sub: argparse._SubParsersAction) -> None:
    from harmono.features.extract import ExtractConfig

    features = sub.add_parser("features", help="extract encoder features into a store, inspect a store")
    commands = features.add_subparsers(dest="features_command", required=True)
    extract = commands.add_parser("extract", help="encode an image dataset into a feature store (resumable)")
    extract.add_argument("--out", required=True, help="store directory (an interrupted one is resumed)")
    add_config_arguments(extract, ExtractConfig)
    extract.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    extract.set_defaults(func=_features_extract)
    info = commands.add_parser("info", help="describe a feature store and check its shards")
    info.add_argument("path", help="store directory")
    info.add_argument(
        "--verify", choices=("checksum", "shape"), default="checksum", help="how to check the shards"
    )
    info.set_defaults(func=_features_info)
    probe = commands.add_parser(
        "probe", help="accuracy of a linear probe trained on one store, tested on another"
    )
    probe.add_argument("train", help="store of the training features")
    probe.add_argument("test", help="store of the test features")
    probe.set_defaults(func=_features_probe)


def _data_download(args: argparse.Namespace) -> int:
    from harmono.data.download import download_fashion_mnist
    from harmono.data.images import FASHION_MNIST_ENV

    root = download_fashion_mnist(args.out, args.mirror, progress=not args.no_progress)
    print(f"Fashion-MNIST verified in {root}; use it with {FASHION_MNIST_ENV}={root}")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from harmono.data.download import FASHION_MNIST_URL

    data = sub.add_parser("data", help="fetch a dataset explicitly (harmono never downloads on its own)")
    commands = data.add_subparsers(dest="data_command", required=True)
    download = commands.add_parser(
        "download", help="download and verify Fashion-MNIST (where the Debian package is not installed)"
    )
    download.add_argument("dataset", choices=("fashion-mnist",), help="dataset to fetch")
    download.add_argument("--out", required=True, help="folder for the IDX files")
    download.add_argument(
        "--mirror",
        default=FASHION_MNIST_URL,
        help=f"URL the file names are appended to (default: {FASHION_MNIST_URL})",
    )
    download.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    download.set_defaults(func=_data_download)


def _claims(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.claims import SECTION, claim_rows
    from harmono.report.marked_sections import update_marked_section

    headers, rows = claim_rows(args.results)
    print(format_table(headers, rows, markdown=True))
    for path in args.write or []:
        text = format_table(headers, rows, markdown=True)
        print(f"{path}: {'updated' if update_marked_section(path, text, SECTION) else 'already up to date'}")
    return 0


def _add_claims_command(sub: argparse._SubParsersAction) -> None:
    claims = sub.add_parser(
        "claims", help="the harmonic-loss paper's claims beside harmono's committed results"
    )
    claims.add_argument("--results", default="results", help="folder with toy/ and gpt/ (default: results)")
    claims.add_argument("--write", nargs="+", help="files whose harmonic-claims markers to fill")
    claims.set_defaults(func=_claims)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``harmono`` command."""
    parser = argparse.ArgumentParser(
        prog="harmono", description="Interpretable models with harmonic loss and MonoLoss."
    )
    parser.add_argument("--version", action="version", version=f"harmono {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo_and_report_commands(sub)
    _add_features_commands(sub)
    _add_data_commands(sub)
    from harmono.cli.finetune import add_finetune_command
    from harmono.cli.gpt import add_gpt_commands
    from harmono.cli.mnist import add_mnist_command
    from harmono.cli.sae import add_sae_commands
    from harmono.cli.toy import add_toy_commands

    add_sae_commands(sub)
    add_toy_commands(sub)
    add_mnist_command(sub)
    add_finetune_command(sub)
    add_gpt_commands(sub)
    _add_claims_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harmono`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, OSError, ModuleNotFoundError) as err:
        print(f"harmono: error: {err}", file=sys.stderr)
        return 2

