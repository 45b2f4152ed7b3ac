"""``harmono sae train | eval | eval-lm | export | compare``: thin wrappers over the library.

``train_sae``, ``evaluate_sae``, ``write_saelens`` (:mod:`harmono.sae.foreign`) and ``compare_rows``
(:mod:`harmono.sae.compare`) do the work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.cli.token_source import add_token_source, token_stream
from harmono.core.io import PRETRAINED_CONFIG, read_json, write_json_atomically
from harmono.report.marked_sections import update_marked_sections
from harmono.report.text_table import format_table
from harmono.sae import ARCHITECTURES, SAE, ForeignSAE
from harmono.sae.compare import METRICS, SECTION, compare_rows, save_records
from harmono.sae.config import SAEConfig
from harmono.sae.evaluate import EVALUATION_FILE, TOP_ACTIVATIONS_FILE, evaluate_sae
from harmono.sae.train import TrainConfig
from harmono.training.runs import RUN_FILE, process_group_from_environment

LM_EVALUATION_FILE = "lm_evaluation.json"
"""What ``harmono sae eval-lm`` writes: CE loss recovered, KL and the settings."""


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


def _sae_and_record(path: Path) -> tuple[SAE, dict]:
    """The SAE of a harmono run folder (its ``sae/``) or of any SAE folder or file, and the run record."""
    run_file = path / RUN_FILE
    record = (
        read_json(run_file, "an SAE run record", ("train",), ("train", "sae")) if run_file.is_file() else {}
    )
    inside = path / "sae"
    return SAE.from_pretrained(inside if (inside / PRETRAINED_CONFIG).is_file() else path), record


def _l2_normalize(args: argparse.Namespace, sae: SAE, record: dict) -> bool:
    """``--normalize``, else as the SAE was trained: a harmono run's setting, raw rows for a foreign SAE."""
    if args.normalize is not None:
        return args.normalize == "l2"
    return record.get("train", {}).get("l2_normalize", not isinstance(sae, ForeignSAE))


def _evaluate(args: argparse.Namespace) -> int:
    from harmono.features import FeatureStore

    path = Path(args.run)
    sae, record = _sae_and_record(path)
    if args.out is None and not path.is_dir():
        raise ValueError(f"{path} is a file: pass --out DIR for the evaluation files")
    out = Path(args.out) if args.out is not None else path
    l2_normalize = _l2_normalize(args, sae, record)
    store = FeatureStore(args.features, verify="shape")
    embeddings = FeatureStore(args.embeddings, verify="shape") if args.embeddings else None
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_sae(
        sae,
        store,
        batch_size=args.batch_size,
        l2_normalize=l2_normalize,
        embeddings=embeddings,
        table=out / EVALUATION_FILE,
        top_activations=out / TOP_ACTIVATIONS_FILE,
        progress=not args.no_progress,
        token_identity=args.token_identity,
    )
    print(json.dumps(result.as_dict(), indent=1))
    return 0


def _evaluate_lm(args: argparse.Namespace) -> int:
    from harmono.models.causal_lm import load_causal_lm
    from harmono.sae.lm_evaluate import evaluate_in_model

    path = Path(args.run)
    sae, record = _sae_and_record(path)
    store = record.get("features_metadata", {})  # a token store records how it was extracted
    hook = args.hook or store.get("hook")
    if hook is None:
        raise ValueError(f"{path} records no hook point (it was not trained on a token store): pass --hook")
    context = args.context or store.get("context") or 128
    skip_first = args.skip_first if args.skip_first is not None else store.get("skip_first", 1)
    l2_normalize = _l2_normalize(args, sae, record)
    lm = load_causal_lm(args.model)
    tokens, _, source = token_stream(args, lm)
    lm.model.to(args.device)
    result = evaluate_in_model(
        sae, lm.model, lm.logits, tokens, hook, context, args.contexts, skip_first, l2_normalize,
        args.batch_size, not args.no_progress,
    )  # fmt: skip
    out = Path(args.out) if args.out is not None else path
    if out.is_dir() or args.out is not None:
        record = {"summary": result.as_dict(), "sae": sae.describe(), "model": lm.name, "tokens": source,
                  "hook": hook, "context": context, "skip_first": skip_first,
                  "l2_normalize": l2_normalize}  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomically(out / LM_EVALUATION_FILE, record, indent=1)
    print(json.dumps(result.as_dict(), indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from harmono.sae.foreign import write_saelens

    path = Path(args.run)
    sae, record = _sae_and_record(path)
    if isinstance(sae, ForeignSAE):
        raise ValueError(f"{path} is a {sae.config.format} SAE: export writes harmono's own SAEs")
    features = record.get("features_metadata", {})
    metadata = {"model_name": features.get("encoder"), "hook_name": features.get("output"),
                "dataset_path": features.get("dataset"),
                "harmono_features": record.get("features")}  # fmt: skip
    l2_normalized = record.get("train", {}).get("l2_normalize", True)
    out = write_saelens(sae, args.out, metadata, l2_normalized, overwrite=args.overwrite)
    norm = "constant_norm_rescale (trained on L2-normalised rows)" if l2_normalized else "none"
    print(f"{out}: SAELens {sae.config.architecture} SAE, normalize_activations {norm}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    runs = [Path(run) for run in args.runs]
    rows = compare_rows(runs, pool_seeds=args.pool_seeds)
    headers = ["run", "arch", "mono_coef", "n", *(title for title, _, _ in METRICS)]
    print(format_table(headers, rows, markdown=args.markdown))
    for record in save_records(runs, args.results) if args.results else []:
        print(f"record: {record}")
    for line in update_marked_sections(args.write or [], format_table(headers, rows, markdown=True), SECTION):
        print(line)
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
        "eval",
        help="R2, L0, dead, MonoScore and purity of any SAE (harmono's or another library's) on a store",
    )
    evaluate.add_argument(
        "run",
        help="a run directory of `harmono sae train`, or an SAE folder or file of harmono, SAELens, "
        "sparsify, dictionary_learning, saev or OpenAI's sparse_autoencoder",
    )
    evaluate.add_argument("--features", required=True, help="feature store to evaluate on")
    evaluate.add_argument(
        "--embeddings", help="store of MonoScore embeddings, row-aligned (default: the SAE input)"
    )
    evaluate.add_argument(
        "--normalize",
        choices=("l2", "none"),
        help="L2-normalise the store's rows first, or not (default: as the harmono run trained; none for "
        "another library's SAE, which gets raw rows and applies its own input norm)",
    )
    evaluate.add_argument(
        "--out", help="folder for evaluation.json and top activations (default: the run or SAE folder)"
    )
    evaluate.add_argument(
        "--token-identity",
        action="store_true",
        help="also MonoScore against the identity of each row's label: the token, for a token store",
    )
    evaluate.add_argument("--batch-size", type=int, default=4096, help="rows per batch (default: 4096)")
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(func=_evaluate)
    lm = commands.add_parser(
        "eval-lm", help="CE loss recovered and KL with the SAE spliced into a language model"
    )
    lm.add_argument(
        "run", help="an SAE run trained on a token store, or any SAE folder or file (with --hook)"
    )
    lm.add_argument(
        "--model", required=True, help="the language model: a harmono GPT or a Hugging Face folder"
    )
    add_token_source(lm)
    lm.add_argument("--hook", help="hook point (default: the one the run's token store was extracted at)")
    lm.add_argument("--context", type=int, help="tokens per context (default: the token store's, else 128)")
    lm.add_argument("--contexts", type=int, default=64, help="held-out contexts to score (default: 64)")
    lm.add_argument("--skip-first", type=int, help="leading positions not scored (default: the store's)")
    lm.add_argument("--normalize", choices=("l2", "none"), help="as for `sae eval` (default: as trained)")
    lm.add_argument("--batch-size", type=int, default=8, help="contexts per forward pass (default: 8)")
    lm.add_argument("--device", default="cpu", help="where the model runs (default: cpu)")
    lm.add_argument("--out", help=f"folder for {LM_EVALUATION_FILE} (default: the run folder)")
    lm.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    lm.set_defaults(func=_evaluate_lm)
    export = commands.add_parser("export", help="write a trained SAE in another library's format (SAELens)")
    export.add_argument("run", help="a run directory of `harmono sae train` (or a harmono SAE folder)")
    export.add_argument("--format", choices=("saelens",), required=True, help="the format to write")
    export.add_argument("--out", required=True, help="folder to write (cfg.json, sae_weights.safetensors)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an SAE already in --out (default: refuse)"
    )
    export.set_defaults(func=_export)
    compare = commands.add_parser("compare", help="a table of the evaluations of several runs")
    compare.add_argument(
        "runs", nargs="+",
        help="run directories, each evaluated with `harmono sae eval`, or records saved by --results",
    )  # fmt: skip
    compare.add_argument(
        "--pool-seeds",
        action="store_true",
        help="one row per setting: mean ± std over the runs that differ only in their seed",
    )
    compare.add_argument("--markdown", action="store_true", help="print a Markdown table")
    compare.add_argument("--results", help="also save each run directory's record (JSON) into this folder")
    compare.add_argument("--write", nargs="+", help="files whose sae-compare markers to fill with the table")
    compare.set_defaults(func=_compare)
