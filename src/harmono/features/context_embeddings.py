"""What a token means, for MonoScore: the sentence embedding of its context, row-aligned with a token store.

For every row of a token store (:mod:`harmono.features.token_activations`)
the context is the ``window`` tokens of the stream ending at that token, cut
at the start of its document (after the last end-of-text token before it).
It is decoded to text by the language model's tokenizer and embedded by a
sentence encoder (all-MiniLM-L6-v2 by default,
:mod:`harmono.encoders.sentence`). The embeddings go into a store with the
token store's ids and labels in its order, so ``harmono sae eval
--embeddings`` pairs them row by row; a killed run resumes. One embedding
store serves every token store cut from the same tokens with the same
settings (another block or another model of the same tokenizer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harmono.features.extract import ExtractReport
from harmono.features.store import FeatureStore
from harmono.features.store_writer import DEFAULT_SHARD_ROWS, FeatureStoreWriter
from harmono.features.token_activations import documents_of

ROW_SETTINGS = ("tokens", "context", "skip_first", "every", "max_tokens")
"""The token store's metadata that decides its rows: an embedding store serves every store that shares them
(every layer and model read on the same tokens)."""


def context_spans(
    offsets: np.ndarray, tokens: np.ndarray, window: int, end_of_text: int | None
) -> list[tuple[int, int]]:
    """``(start, stop)`` of each offset's context: up to ``window`` tokens ending at it, in its document."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    offsets = np.asarray(offsets, dtype=np.int64)
    _, starts = documents_of(tokens, offsets, end_of_text)
    return [
        (max(int(o) - window + 1, int(start)), int(o) + 1) for o, start in zip(offsets, starts, strict=True)
    ]


def embed_token_contexts(
    token_store: str | Path,
    tokens: np.ndarray,
    decode: Callable[[list[int]], str],
    embed: Callable[[list[str]], torch.Tensor],
    out: str | Path,
    window: int = 16,
    end_of_text: int | None = None,
    metadata: dict | None = None,
    batch_size: int = 256,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    progress: bool = True,
) -> ExtractReport:
    """Write the context embedding of every row of ``token_store`` into the store ``out``.

    Parameters
    ----------
    token_store : str or Path
        A store written by ``extract_token_activations`` (ids are stream offsets, labels token ids).
    tokens : np.ndarray
        ``(N,)`` the token stream it was extracted from (checked against its labels).
    decode : callable
        Token ids -> text (the language model's tokenizer).
    embed : callable
        List of texts -> ``(B, E)`` embeddings (e.g. ``SentenceEmbedder.embed``).
    out : str or Path
        The embedding store (resumed if it holds shards of the same settings).
    window : int
        Tokens per context, the token itself included.
    end_of_text : int, optional
        The token that ends a document; contexts do not reach across it.
    metadata : dict, optional
        Added to the store's metadata (the embedder's name).
    batch_size : int
        Contexts embedded per call.
    shard_rows : int
        Rows per shard file (a killed run resumes from its last whole shard).
    progress : bool
        Show a progress bar.
    """
    store = FeatureStore(token_store, verify="shape")
    offsets = np.asarray([int(row_id) for row_id in store.ids], dtype=np.int64)
    tokens = np.asarray(tokens)
    if len(offsets) and (offsets.max() >= len(tokens) or not np.array_equal(tokens[offsets], store.labels)):
        raise ValueError(
            f"{store.directory}: expected the token stream it was extracted from (its labels are the tokens "
            "at its offsets), got another stream"
        )
    spans = context_spans(offsets, tokens, window, end_of_text)
    dim = int(embed([decode([int(tokens[offsets[0]])])]).shape[1]) if len(offsets) else 1
    rows_from = {key: store.metadata.get(key) for key in ROW_SETTINGS}  # which tokens, not which activations
    record = {**(metadata or {}), "token_rows": rows_from, "window": window, "class_names": []}
    labels = store.labels
    start = time.perf_counter()
    with FeatureStoreWriter(out, dim, record, dtype="float32", shard_rows=shard_rows) as writer:
        todo = writer.remaining(store.ids)
        with tqdm(total=len(todo), desc="context embeddings", unit="tok", disable=not progress) as bar:
            for begin in range(0, len(todo), batch_size):
                chosen = todo[begin : begin + batch_size]
                texts = [
                    decode(np.asarray(tokens[slice(*spans[i])], dtype=np.int64).tolist()) for i in chosen
                ]
                writer.append(embed(texts), [store.ids[i] for i in chosen], [int(labels[i]) for i in chosen])
                bar.update(len(chosen))
    return ExtractReport(Path(out), len(todo), len(offsets) - len(todo), time.perf_counter() - start)
