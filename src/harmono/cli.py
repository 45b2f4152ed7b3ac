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
    except (ValueError, OSError) as err:
        print(f"harmono: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
