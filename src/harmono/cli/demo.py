"""``harmono demo`` and ``harmono report``: thin wrappers over ``run_demo`` and ``write_report``.

The demo command runs the demo, then writes its report (unless ``--no-report``)
and prints each step's tables and claims.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, replace

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.experiments.demo import QUICK_DEMO, QUICK_TOY_POINTS, DemoConfig, DemoOutcome, run_demo
from harmono.experiments.harmonic.points import ToyPointsConfig
from harmono.experiments.mono.cluster_latents import MonoToyConfig
from harmono.report.text_table import format_table


def _print_claims(claims: Sequence[tuple[str, bool]]) -> None:
    for text, holds in claims:
        print(f"[{'holds' if holds else 'DOES NOT HOLD'}] {text}")


def _stored_claims(summary: dict) -> list[tuple[str, bool]]:
    return [(claim["text"], claim["holds"]) for claim in summary["claims"]]


def _print_demo_summary(outcome: DemoOutcome, mono_config: MonoToyConfig) -> None:
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
    from harmono.report.build import write_report

    config = config_from_arguments(DemoConfig, args, base=asdict(QUICK_DEMO) if args.quick else None)
    toy_config = config_from_arguments(ToyPointsConfig, args, prefix="toy")
    if args.quick and not hasattr(args, "toy_steps"):
        toy_config = replace(toy_config, **QUICK_TOY_POINTS)
    mono_config = config_from_arguments(MonoToyConfig, args, prefix="mono")
    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    command = "harmono demo" + (" --quick" if args.quick else "") + (f" --out {args.out}" if args.out else "")
    outcome = run_demo(out, config, toy_config, mono_config, progress=not args.no_progress, command=command)
    if not args.no_report:
        write_report(out)
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


def add_demo_and_report_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono demo`` and ``harmono report`` to the top-level parser's subcommands ``sub``."""
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
    report.add_argument(
        "run",
        help="a demo directory, an evaluated SAE (a run or `sae eval --out` folder), or a toy run or "
        "suite directory",
    )
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.add_argument("--features", help="SAE runs: the evaluated feature store, if it moved")
    report.add_argument("--screenshot", help="also save a PNG screenshot (needs playwright and Chromium)")
    report.set_defaults(func=_report)
