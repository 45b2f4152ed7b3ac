"""``harmono toy run | suite | efficiency | clusters | tables | dropout-gap``: the toy experiments."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harmono.core.device import resolve_device
from harmono.data.toy import TASKS
from harmono.experiments.harmonic.toy_efficiency import EFFICIENCY_FRACTIONS, run_efficiency
from harmono.experiments.harmonic.toy_leakage import LEAKAGE_SECTION, leakage_markdown
from harmono.experiments.harmonic.toy_suite import (
    DEFAULT_EXPONENT,
    MODEL_NAMES,
    PAPER_SEEDS,
    SAMPLINGS,
    record_run_name,
    record_sampling,
    run_config,
    run_suite,
    suite_figures,
    training_seconds,
)
from harmono.experiments.harmonic.toy_tables import (
    CONTROLS_SECTION,
    EFFICIENCY_SECTION,
    EXPONENT_SECTION,
    SECTION,
    SUITE_CONTROLS_SECTION,
    efficiency_controls_markdown,
    efficiency_curves,
    efficiency_markdown,
    exponent_markdown,
    read_results,
    results_markdown,
    suite_controls_markdown,
    suite_rows,
)
from harmono.experiments.harmonic.toy_tasks import EMBEDDING_REGULARISERS
from harmono.experiments.harmonic.toy_vs_paper import VS_PAPER_SECTION, vs_paper_markdown
from harmono.models.toy import ARCHITECTURES, HEADS
from harmono.report.marked_sections import markers, update_marked_section
from harmono.report.text_table import format_table

OFFICIAL_DRAWS_NEED = "--official-draws replays the official code's draws, which are with replacement"


def _seeds(args: argparse.Namespace) -> tuple[int, ...]:
    """``--seed-list`` as given, or the first ``--seeds`` of the paper's seeds."""
    if args.seed_list is not None:
        negative = [s for s in args.seed_list if s < 0]
        if negative:
            raise ValueError(f"--seed-list takes seeds >= 0, got {negative}")
        repeated = sorted({s for s in args.seed_list if args.seed_list.count(s) > 1})
        if repeated:
            raise ValueError(f"--seed-list names seeds {repeated} more than once; each seed trains one model")
        return tuple(args.seed_list)
    if not 1 <= args.seeds <= len(PAPER_SEEDS):
        raise ValueError(f"--seeds must be in [1, {len(PAPER_SEEDS)}] (the paper's seeds), got {args.seeds}")
    return PAPER_SEEDS[: args.seeds]


def _train_overrides(args: argparse.Namespace) -> dict:
    names = (
        "epochs", "batch_size", "lr", "weight_decay", "embedding_reg", "reg_strength", "paper_sampling",
        "eval_dropout", "official_draws",
        "train_fraction",  # only `toy run` has this option
    )  # fmt: skip
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _print_suite(records: list[dict], markdown: bool) -> None:
    for sampling in SAMPLINGS:
        chosen = [r for r in records if record_sampling(r) == sampling]
        exponents = sorted({r["model"]["exponent"] for r in chosen if r["model"]["head"] == "harmonic"})
        for exponent in exponents or [DEFAULT_EXPONENT]:
            group = [
                r for r in chosen if r["model"]["head"] == "standard" or r["model"]["exponent"] == exponent
            ]
            if not group:
                continue
            where = f"{sampling} sampling" + (f", harmonic n = {exponent:g}" if len(exponents) > 1 else "")
            for cell, title in (
                ("ev", "Top-2 PCA explained variance (%), median [min-max] over seeds (paper)"),
                ("grokking", "Median epoch train > 0.9 -> test > 0.9 (seeds reaching test > 0.9) (paper)"),
            ):
                print(f"\n{title}; {where}")
                print(format_table(*suite_rows(group, cell), markdown=markdown))
    print(f"\ntraining wall time: {training_seconds(records):.0f} s")


def _tables(args: argparse.Namespace) -> int:
    from harmono.analysis.toy_figures import plot_data_efficiency

    records = read_results(args.results)
    sections = {
        SECTION: results_markdown(records),
        EXPONENT_SECTION: exponent_markdown(records),
        EFFICIENCY_SECTION: efficiency_markdown(records),
        CONTROLS_SECTION: efficiency_controls_markdown(records),
        SUITE_CONTROLS_SECTION: suite_controls_markdown(records),
        VS_PAPER_SECTION: vs_paper_markdown(records),
        LEAKAGE_SECTION: leakage_markdown(records),
    }
    if args.dropout_gap is not None:
        from harmono.experiments.harmonic.toy_checkpoint import (
            DROPOUT_GAP_SECTION,
            DROPOUT_SITES_SECTION,
            dropout_gap_markdown,
            dropout_site_markdown,
            read_dropout_gap_reports,
        )

        reports = read_dropout_gap_reports(args.dropout_gap)
        sections[DROPOUT_GAP_SECTION] = dropout_gap_markdown(reports)
        sections[DROPOUT_SITES_SECTION] = dropout_site_markdown(reports)
    for path in args.write or []:
        text = Path(path).read_text()
        for name, section in sections.items():
            if markers(name)[0] in text:
                changed = update_marked_section(path, section, name)
                print(f"{path} [{name}]: {'updated' if changed else 'already up to date'}")
    if not args.write:
        print("\n\n".join(sections.values()))
    curves = efficiency_curves(records, other_exponents=True)
    if args.figure and curves:
        figure = plot_data_efficiency(curves, args.figure, title="test accuracy vs train fraction (MLP)")
        print(f"figure: {figure}")
    return 0


def _clusters(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.toy_suite import embedding_clusters

    rows = []
    for run in args.runs:
        ratio, spectrum = embedding_clusters(run)
        rows.append((Path(run).name, f"{ratio[0]:.4f} [{ratio[1]:.4f}-{ratio[2]:.4f}]",
                     " ".join(f"{v:.3f}" for v in spectrum)))  # fmt: skip
    headers = ["run", "within / between class distance, median [min-max]", "EV of the class means (median)"]
    print(format_table(headers, rows, markdown=args.markdown))
    return 0


def _dropout_gap(args: argparse.Namespace) -> int:
    from harmono.core.io import write_json_atomically
    from harmono.core.provenance import provenance
    from harmono.experiments.harmonic.toy_checkpoint import dropout_gap, dropout_gap_rows, dropout_site_rows

    if args.json is not None and args.json.exists() and not args.overwrite:
        raise FileExistsError(f"{args.json} exists (a dropout-gap report?): pass --overwrite to replace it")
    report = dropout_gap(args.checkpoint, args.draws)
    print(f"{report['task']}, epoch {report['epoch']}, dropout on: the mean of {report['draws']} draws")
    print(format_table(*dropout_gap_rows([report]), markdown=args.markdown))
    print("\ntraining accuracy with dropout on at one site only")
    print(format_table(*dropout_site_rows([report]), markdown=args.markdown))
    if args.json is not None:
        record = {**report, "command": f"harmono toy dropout-gap CHECKPOINT --draws {args.draws}",
                  "provenance": provenance()}  # fmt: skip
        print(f"report: {write_json_atomically(args.json, record, indent=1)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.official_draws and not args.paper_sampling:
        raise ValueError(f"{OFFICIAL_DRAWS_NEED}: add --paper-sampling")
    overrides = {"exponent": args.exponent} if args.exponent is not None else None
    record = run_config(
        args.task, args.arch, args.head, args.out, _seeds(args), not args.no_progress, overrides,
        device=resolve_device(args.device), **_train_overrides(args),
    )  # fmt: skip
    figures = suite_figures(args.out, [record], [Path(args.out)])
    _print_suite([record], args.markdown)
    rows = [
        (s["seed"], f"{100 * s['ev_top2']:.1f}", s["train_epoch"], s["test_epoch"],
         f"{s['final_train_acc']:.3f}", f"{s['final_test_acc']:.3f}", f"{s['leakage']:.2f}")
        for s in record["seeds"]
    ]  # fmt: skip
    print(format_table(["seed", "EV2 %", "train>0.9", "test>0.9", "train acc", "test acc", "leakage"], rows))
    print(f"results in {Path(args.out) / 'results.json'}; figures: {', '.join(str(f) for f in figures)}")
    return 0


def _refuse_paper_sampling_flag(args: argparse.Namespace) -> None:
    if args.paper_sampling:
        raise ValueError("use --samplings paper (or --samplings leak-free paper) here, not --paper-sampling")
    if args.official_draws and "leak-free" in args.samplings:
        given = " ".join(args.samplings)
        raise ValueError(f"{OFFICIAL_DRAWS_NEED}: run it with --samplings paper, got --samplings {given}")


def _suite(args: argparse.Namespace) -> int:
    _refuse_paper_sampling_flag(args)
    start = time.perf_counter()
    records = run_suite(
        args.out,
        args.tasks,
        args.archs,
        _seeds(args),
        not args.no_progress,
        device=resolve_device(args.device),
        heads=args.heads,
        samplings=args.samplings,
        exponents=args.exponents,
        results_dir=args.results,
        **_train_overrides(args),
    )
    drawn = [r for r in records if (Path(args.out) / record_run_name(r) / "curves.safetensors").is_file()]
    figures = suite_figures(args.out, drawn) if drawn else []
    _print_suite(records, args.markdown)
    print(f"this call: {time.perf_counter() - start:.0f} s; figures: {', '.join(str(f) for f in figures)}")
    return 0


def _efficiency(args: argparse.Namespace) -> int:
    from harmono.analysis.toy_figures import plot_data_efficiency
    from harmono.analysis.toy_metrics import mean_std

    _refuse_paper_sampling_flag(args)
    curves = run_efficiency(
        args.task, args.out, args.fractions, args.archs, _seeds(args), not args.no_progress,
        device=resolve_device(args.device), samplings=args.samplings, results_dir=args.results,
        exponents=args.exponents, **_train_overrides(args),
    )  # fmt: skip
    figure = plot_data_efficiency(
        curves, Path(args.out) / "data_efficiency.png", title=f"{args.task}: test accuracy"
    )
    names = list(curves[args.task])
    rows = []
    for k, fraction in enumerate(args.fractions):
        row = [f"{fraction:g}"]
        for name in names:
            mean, std = mean_std(curves[args.task][name][1][:, k])
            row.append(f"{mean:.3f} ± {std:.3f}")
        rows.append(row)
    print(format_table(["train fraction", *names], rows, markdown=args.markdown))
    print(f"figure: {figure}")
    return 0


def _add_common(parser: argparse.ArgumentParser, seeds: int) -> None:
    parser.add_argument("--out", required=True, help="output directory (finished runs in it are reused)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--seeds", type=int, default=seeds, help=f"the first N of the paper's 20 seeds (default {seeds})"
    )
    chosen.add_argument(
        "--seed-list", type=int, nargs="+", metavar="SEED",
        help="train these seeds instead of the paper's (e.g. more seeds for a control)",
    )  # fmt: skip
    group = parser.add_argument_group("training (default: the official protocol)")
    group.add_argument(
        "--epochs", type=int, help="epochs (default 7000; 10000 for the permutation transformer)"
    )
    group.add_argument("--batch-size", type=int, help="examples per step (default 32)")
    group.add_argument("--lr", type=float, help="AdamW learning rate (default 2e-3)")
    group.add_argument(
        "--weight-decay", type=float, help="AdamW weight decay (default 0.01 MLP, 0.005 transformer)"
    )
    group.add_argument(
        "--embedding-reg", choices=EMBEDDING_REGULARISERS, help="embedding regulariser (default rms)"
    )
    group.add_argument(
        "--reg-strength", type=float, help="weight of the embedding regulariser (default 0.01)"
    )
    group.add_argument(
        "--paper-sampling", action="store_true", default=None,
        help="draw examples with replacement as the official code (test examples leak into training)",
    )  # fmt: skip
    group.add_argument(
        "--official-draws", action="store_true", default=None,
        help="train each seed on the split the official code draws for it (numpy's legacy generator), "
        "for the paper's seeds the paper's own splits (a control; with paper sampling)",
    )  # fmt: skip
    group.add_argument(
        "--eval-dropout", action="store_true", default=None,
        help="measure accuracy with the training dropout on, as the official code (a control; "
        "transformers only: MLPs have no dropout)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", help="where to train: cpu, cuda, or auto (a GPU if any; default)"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_stacking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--samplings", nargs="+", choices=SAMPLINGS, default=["leak-free"],
        help="splits to run: leak-free (without replacement; default) and/or paper (with replacement)",
    )  # fmt: skip
    parser.add_argument(
        "--results", type=Path,
        help="also write each finished configuration's results JSON here (e.g. results/toy)",
    )  # fmt: skip


def _add_exponents(parser: argparse.ArgumentParser, each: str) -> None:
    parser.add_argument(
        "--exponents", nargs="+", type=float, default=[DEFAULT_EXPONENT],
        help=f"harmonic exponents n in p ∝ d^-n, one {each} each (default 2)",
    )  # fmt: skip


def add_toy_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono toy run | suite | efficiency | clusters | tables | dropout-gap`` to the parser."""
    toy = sub.add_parser("toy", help="harmonic loss on the paper's algorithmic tasks").add_subparsers(
        dest="toy_command", required=True
    )
    run = toy.add_parser("run", help="one task, architecture and head, all seeds trained at once")
    run.add_argument("--task", choices=TASKS, required=True)
    run.add_argument("--arch", choices=ARCHITECTURES, default="mlp")
    run.add_argument("--head", choices=HEADS, default="harmonic")
    run.add_argument("--exponent", type=float, help="harmonic exponent n in p ∝ d^-n (default 2)")
    run.add_argument("--train-fraction", type=float, help="share of examples for training (default 0.8)")
    _add_common(run, 20)
    run.set_defaults(func=_run)
    suite = toy.add_parser(
        "suite",
        help=f"all tasks x {', '.join(MODEL_NAMES.values())} (x samplings x exponents), "
        "one stack per task and architecture; resumable",
    )
    suite.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    suite.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    suite.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    _add_exponents(suite, "configuration")
    _add_stacking(suite)
    _add_common(suite, 20)
    suite.set_defaults(func=_suite)
    efficiency = toy.add_parser("efficiency", help="test accuracy vs train fraction, both heads")
    efficiency.add_argument("--task", choices=TASKS, required=True)
    efficiency.add_argument("--archs", nargs="+", choices=ARCHITECTURES, default=["mlp"])
    efficiency.add_argument("--fractions", nargs="+", type=float, default=list(EFFICIENCY_FRACTIONS))
    _add_exponents(efficiency, "harmonic curve")
    _add_stacking(efficiency)
    _add_common(efficiency, 3)
    efficiency.set_defaults(func=_efficiency)
    clusters = toy.add_parser(
        "clusters", help="how tightly the embeddings cluster by class (equivalence: numbers mod 5)"
    )
    clusters.add_argument("runs", nargs="+", help="finished toy run directories")
    clusters.add_argument("--markdown", action="store_true", help="print a Markdown table")
    clusters.set_defaults(func=_clusters)
    tables = toy.add_parser(
        "tables", help="Markdown tables of committed toy results beside the paper's (README, docs)"
    )
    tables.add_argument(
        "results", type=Path, help="folder of results JSON, subfolders included (harmono toy suite --results)"
    )
    tables.add_argument(
        "--write", nargs="+", type=Path,
        help="files whose toy-tables, toy-exponents, toy-efficiency, toy-efficiency-controls, "
        "toy-suite-controls, toy-vs-paper, toy-leakage (and toy-dropout-gap, toy-dropout-sites) markers "
        "to fill (default: print)",
    )  # fmt: skip
    tables.add_argument("--figure", type=Path, help="also draw the data-efficiency curves into this PNG")
    tables.add_argument(
        "--dropout-gap", type=Path,
        help="also fill the toy-dropout-gap and toy-dropout-sites markers from this folder of "
        "`toy dropout-gap --json` reports",
    )  # fmt: skip
    tables.set_defaults(func=_tables)
    gap = toy.add_parser(
        "dropout-gap",
        help="a toy transformer stack's accuracies with dropout off and on, from a checkpoint",
        description="Rebuild the models of a stack checkpoint (stack-*.safetensors in a suite's --out "
        "folder) and measure each model's train and test accuracy with dropout off (harmono's evaluation) "
        "and on (the mode it trains in, and the official code's evaluation; the mean of --draws passes).",
    )
    gap.add_argument("checkpoint", type=Path, help="a stack checkpoint, stack-*.safetensors")
    gap.add_argument("--draws", type=int, default=20, help="passes with dropout on to average (default 20)")
    gap.add_argument("--json", type=Path, help="also write the per-seed report to this JSON file")
    gap.add_argument(
        "--overwrite", action="store_true", help="replace an existing --json file (default: refuse)"
    )
    gap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    gap.set_defaults(func=_dropout_gap)
