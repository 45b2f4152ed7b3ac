"""``harmono features extract | info | probe``: thin wrappers over feature extraction, stores and probes."""

from __future__ import annotations

import argparse
import json

from harmono.analysis.probe import probe_stores
from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.features import FeatureStore
from harmono.features.extract import ExtractConfig, extract_from_config, store_summary


def _extract(args: argparse.Namespace) -> int:
    config = config_from_arguments(ExtractConfig, args)
    report = extract_from_config(config, args.out, progress=not args.no_progress)
    rate = report.extracted / report.seconds if report.seconds > 0 else 0.0
    print(
        f"{report.store}: encoded {report.extracted} samples in {report.seconds:.1f} s ({rate:.1f} img/s), "
        f"{report.skipped} were stored already"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(store_summary(FeatureStore(args.path, verify=args.verify)), indent=1))
    return 0


def _probe(args: argparse.Namespace) -> int:
    train, test = FeatureStore(args.train, verify="shape"), FeatureStore(args.test, verify="shape")
    result = probe_stores(train, test)
    print(
        f"linear probe on {len(train)} x {train.dim} features: train accuracy {result.train_accuracy:.4f}, "
        f"test accuracy {result.test_accuracy:.4f} ({len(test)} samples)"
    )
    return 0


def add_features_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono features extract | info | probe`` to the top-level parser's subcommands ``sub``."""
    features = sub.add_parser("features", help="extract encoder features into a store, inspect a store")
    commands = features.add_subparsers(dest="features_command", required=True)
    extract = commands.add_parser("extract", help="encode an image dataset into a feature store (resumable)")
    extract.add_argument("--out", required=True, help="store directory (an interrupted one is resumed)")
    add_config_arguments(extract, ExtractConfig)
    extract.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    extract.set_defaults(func=_extract)
    info = commands.add_parser("info", help="describe a feature store and check its shards")
    info.add_argument("path", help="store directory")
    info.add_argument(
        "--verify", choices=("checksum", "shape"), default="checksum", help="how to check the shards"
    )
    info.set_defaults(func=_info)
    probe = commands.add_parser(
        "probe", help="accuracy of a linear probe trained on one store, tested on another"
    )
    probe.add_argument("train", help="store of the training features")
    probe.add_argument("test", help="store of the test features")
    probe.set_defaults(func=_probe)
