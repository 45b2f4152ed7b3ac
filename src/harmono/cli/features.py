"""``harmono features extract | extract-lm | embed-contexts | info | probe``: extraction and stores."""

from __future__ import annotations

import argparse
import json

from harmono.analysis.probe import probe_stores
from harmono.cli.options import add_config_arguments, config_from_arguments
from harmono.cli.token_source import add_token_source, load_tokenizer, token_stream, tokenizer_file
from harmono.features import FeatureStore
from harmono.features.extract import ExtractConfig, extract_from_config, store_summary
from harmono.features.token_activations import TokenExtractConfig


def _extract(args: argparse.Namespace) -> int:
    config = config_from_arguments(ExtractConfig, args)
    report = extract_from_config(config, args.out, progress=not args.no_progress)
    rate = report.extracted / report.seconds if report.seconds > 0 else 0.0
    print(
        f"{report.store}: encoded {report.extracted} samples in {report.seconds:.1f} s ({rate:.1f} img/s), "
        f"{report.skipped} were stored already"
    )
    return 0


def _extract_lm(args: argparse.Namespace) -> int:
    from harmono.features.token_activations import extract_token_activations
    from harmono.models.causal_lm import load_causal_lm

    lm = load_causal_lm(args.model)
    config = config_from_arguments(TokenExtractConfig, args)
    if config.context > lm.context:
        raise ValueError(
            f"--context {config.context} is longer than {args.model} reads ({lm.context} tokens)"
        )
    tokens, end, source = token_stream(args, lm)
    tokenizer = tokenizer_file(args, lm)
    metadata = {
        "model": lm.name,
        "tokens": source,
        "tokenizer": str(tokenizer.resolve()) if tokenizer else None,
    }
    report = extract_token_activations(
        lm.model, tokens, args.out, config, metadata, end, not args.no_progress
    )
    print(
        f"{report.store}: {report.extracted} token activations at {config.hook} in {report.seconds:.1f} s, "
        f"{report.skipped} were stored already"
    )
    return 0


def _embed_contexts(args: argparse.Namespace) -> int:
    from harmono.encoders.sentence import MINILM_NAME, SentenceEmbedder
    from harmono.features.context_embeddings import embed_token_contexts
    from harmono.models.causal_lm import load_causal_lm

    lm = load_causal_lm(args.model)
    tokens, end, _ = token_stream(args, lm)
    tokenizer = load_tokenizer(args, lm, "to decode the contexts")
    embedder = SentenceEmbedder(args.embedder, device=args.device)
    report = embed_token_contexts(
        args.token_store, tokens, tokenizer.decode, embedder.embed, args.out, window=args.window,
        end_of_text=end, metadata={"embedder": args.embedder or MINILM_NAME}, batch_size=args.batch_size,
        progress=not args.no_progress,
    )  # fmt: skip
    print(f"{report.store}: {report.extracted} context embeddings in {report.seconds:.1f} s, "
          f"{report.skipped} were stored already")  # fmt: skip
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
    lm = commands.add_parser(
        "extract-lm", help="store a causal LM's activations, one row per token (resumable)"
    )
    lm.add_argument(
        "--model", required=True, help="a harmono GPT (or its run folder) or a Hugging Face folder"
    )
    lm.add_argument("--out", required=True, help="store directory (an interrupted one is resumed)")
    add_token_source(lm)
    add_config_arguments(lm, TokenExtractConfig)
    lm.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    lm.set_defaults(func=_extract_lm)
    contexts = commands.add_parser(
        "embed-contexts",
        help="sentence-embed each token's context, row-aligned with a token store (resumable)",
    )
    contexts.add_argument("token_store", help="a store written by `harmono features extract-lm`")
    contexts.add_argument(
        "--model", required=True, help="the language model (its tokenizer decodes contexts)"
    )
    contexts.add_argument("--out", required=True, help="embedding store directory (resumed if interrupted)")
    add_token_source(contexts)
    contexts.add_argument(
        "--window", type=int, default=16, help="tokens per context, ending at the token (16)"
    )
    contexts.add_argument(
        "--embedder", help="a mean-pooling sentence encoder folder (default: all-MiniLM-L6-v2)"
    )
    contexts.add_argument("--batch-size", type=int, default=256, help="contexts per batch (default: 256)")
    contexts.add_argument("--device", default="cpu", help="where the embedder runs (default: cpu)")
    contexts.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    contexts.set_defaults(func=_embed_contexts)
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
