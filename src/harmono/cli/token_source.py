"""The token stream a command reads: a prepared corpus split, text files, or a ``.bin`` of token ids."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harmono.models.causal_lm import CausalLM


def add_token_source(parser: argparse.ArgumentParser) -> None:
    """--corpus / --text / --tokens and what goes with them (read by ``token_stream``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="a corpus prepared by `harmono gpt prepare`")
    source.add_argument("--text", nargs="+", help="UTF-8 text files, tokenised by the model's tokenizer")
    source.add_argument("--tokens", help="a .bin file of token ids")
    parser.add_argument(
        "--split", choices=("train", "val"), default="val", help="--corpus split (default: val)"
    )
    parser.add_argument("--tokenizer", help="tokenizer.json (default: the model folder's)")
    parser.add_argument("--token-dtype", default="uint16", help="dtype of --tokens (default: uint16)")


def token_stream(args: argparse.Namespace, lm: CausalLM) -> tuple[np.ndarray, int | None, str]:
    """``(token ids, end-of-text id, description)`` from --corpus, --text or --tokens of ``args``.

    ``lm`` gives the tokenizer for --text and the end-of-text token of --text and --tokens.
    """
    from harmono.data.text import TokenCorpus

    if args.corpus:
        corpus = TokenCorpus.open(args.corpus)
        return (
            np.asarray(corpus.splits[args.split]),
            corpus.meta.get("end_of_text"),
            f"{args.corpus} {args.split}",
        )
    if args.tokens:
        return np.fromfile(args.tokens, dtype=args.token_dtype), lm.end_of_text, str(args.tokens)
    tokenizer = load_tokenizer(args, lm, "to tokenise --text")
    ids: list[int] = []
    for path in args.text:
        ids.extend(tokenizer.encode(Path(path).read_text(encoding="utf-8")).ids)
        if lm.end_of_text is not None:
            ids.append(lm.end_of_text)
    return np.asarray(ids, dtype=np.int64), lm.end_of_text, " ".join(args.text)


def tokenizer_file(args: argparse.Namespace, lm: CausalLM) -> Path | None:
    """``--tokenizer``, else the model folder's ``tokenizer.json`` (None: neither)."""
    found = args.tokenizer or lm.tokenizer
    return Path(found) if found else None


def load_tokenizer(args: argparse.Namespace, lm: CausalLM, purpose: str):
    """The ``tokenizers.Tokenizer`` of ``tokenizer_file``; an error naming ``purpose`` when there is none."""
    from tokenizers import Tokenizer

    found = tokenizer_file(args, lm)
    if found is None:
        raise ValueError(f"{args.model} has no tokenizer.json: pass --tokenizer FILE {purpose}")
    return Tokenizer.from_file(str(found))
