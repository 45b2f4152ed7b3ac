"""The ``harmono`` command.

Thin by design: it parses arguments into the library's config dataclasses,
calls the experiment functions and presents what they return.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from harmono import __version__
from harmono.config_cli import add_config_arguments, config_from_arguments
from harmono.experiments.claims import Claim
from harmono.experiments.mono_toy import MonoToyConfig, MonoToyResult, check_mono_toy_claims
from harmono.experiments.toy_points import ToyPointsConfig, ToyResult, check_toy_claims
from harmono.report.text_table import format_table


def toy_table(results: Sequence[ToyResult]) -> str:
    """The toy-case summary: final loss, center-to-point distances, weight norm."""
    rows = [
        (
            r.case,
            r.head,
            f"{r.final_loss:.3e}",
            " ".join(f"{d:.3g}" for d in r.center_distances),
            f"{r.weight_norm:.3f}",
        )
        for r in results
    ]
    return format_table(["case", "head", "final loss", "|center - point| per class", "|W|"], rows)


def mono_toy_table(result: MonoToyResult) -> str:
    """The MonoScore toy summary: score range and purity per kind of latent."""
    rows = [
        (k.kind, f"{k.mean_score:.3f}", f"{k.min_score:.3f} .. {k.max_score:.3f}", f"{k.mean_purity:.2f}")
        for k in result.kinds
    ]
    return format_table(["latents fire on", "mean MonoScore", "range", "class purity"], rows)


def _print_claims(claims: Sequence[Claim]) -> None:
    for claim in claims:
        print(f"[{'holds' if claim.holds else 'DOES NOT HOLD'}] {claim.text}")


def _demo(args: argparse.Namespace) -> int:
    from harmono.experiments.demo import run_demo

    config = config_from_arguments(ToyPointsConfig, args, prefix="toy")
    mono_config = config_from_arguments(MonoToyConfig, args, prefix="mono")
    outputs = run_demo(args.out, config, progress=not args.no_progress, mono_config=mono_config)
    print("\nHarmonic loss, 2-D toy cases (paper Fig. 1): harmonic head vs linear head + SoftMax")
    print(toy_table(outputs.toy_results))
    print()
    _print_claims(check_toy_claims(outputs.toy_results))
    print(f"\nfigure: {outputs.toy_figure}\nresults: {outputs.toy_json}")
    mono = outputs.mono_result
    print(
        f"\nMonoScore of synthetic latents on {mono_config.clusters} embedding clusters "
        f"(within-cluster similarity {mono.within_similarity:.3f}, whole set {mono.mean_similarity:.3f})"
    )
    print(mono_toy_table(mono))
    print()
    _print_claims(check_mono_toy_claims(mono))
    print(f"\nresults: {outputs.mono_json}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``harmono`` command."""
    parser = argparse.ArgumentParser(
        prog="harmono", description="Interpretable models with harmonic loss and MonoLoss."
    )
    parser.add_argument("--version", action="version", version=f"harmono {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="reproduce the papers' claims on a laptop")
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    add_config_arguments(demo.add_argument_group("toy cases"), ToyPointsConfig, prefix="toy")
    add_config_arguments(demo.add_argument_group("MonoScore toy"), MonoToyConfig, prefix="mono")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)
    _add_features_commands(sub)
    _add_data_commands(sub)
    from harmono.finetune_cli import add_finetune_command
    from harmono.gpt_cli import add_gpt_commands
    from harmono.mnist_cli import add_mnist_command
    from harmono.sae.cli import add_sae_commands
    from harmono.toy_cli import add_toy_commands

    add_sae_commands(sub)
    add_toy_commands(sub)
    add_mnist_command(sub)
    add_finetune_command(sub)
    add_gpt_commands(sub)
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


if __name__ == "__main__":
    sys.exit(main())
