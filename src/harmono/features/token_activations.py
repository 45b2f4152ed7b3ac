"""Token activations of a causal language model into a feature store, resumably.

The token stream (a prepared corpus split, a tokenised text, or a ``.bin``
of token ids) is cut into consecutive contexts of ``context`` tokens. The
model reads each context; the activation at the hook point (see
:mod:`harmono.features.lm_hooks`) of every kept position becomes one row:

- positions ``0 .. skip_first - 1`` of each context are left out (their
  activations are outliers: the first tokens serve as attention sinks);
- of the rest, every ``every``-th position is kept.

A row's id is its offset in the token stream and its label is its token
id; the store's metadata names the model, hook point, token source and
these settings, and ``tokens.safetensors`` beside the shards lists, row by
row, the ``offset``, ``token``, ``document`` (end-of-text tokens before it)
and ``position`` (in its context), and holds the ``stream`` of tokens the
contexts were cut from (so the latent browser can show a row's neighbours
as text). Contexts already in the store are skipped,
so a killed extraction continues where its last shard ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.core.io import write_atomically
from harmono.features.extract import ExtractReport
from harmono.features.lm_hooks import capture, resolve_hook
from harmono.features.store import FeatureStore
from harmono.features.store_format import DTYPES
from harmono.features.store_writer import DEFAULT_SHARD_ROWS, FeatureStoreWriter

TOKENS_FILE = "tokens.safetensors"
"""Row-aligned ``offset``, ``token``, ``document``, ``position`` (int64) of a token store; its ``stream``."""
STORED_SETTINGS = ("hook", "context", "skip_first", "every", "max_tokens")
"""The ``TokenExtractConfig`` fields that decide the rows: kept in the metadata, checked on resume."""


@dataclass(frozen=True)
class TokenExtractConfig:
    """Which activations of which tokens to store."""

    hook: str = "resid.-1"
    """Hook point: SITE.L (resid, mlp or attn of block L) or module:PATH / module-input:PATH."""
    context: int = 128
    """Tokens per context (at most the model's context length)."""
    skip_first: int = 1
    """Positions at the start of each context not stored (attention sinks)."""
    every: int = 1
    """Store every n-th of the remaining positions."""
    max_tokens: int = 0
    """Store at most this many rows (0: the whole stream)."""
    batch_size: int = 16
    """Contexts per forward pass."""
    device: str = "auto"
    """Where the model runs: auto, cpu, cuda, ..."""
    dtype: str = "float32"
    """Storage dtype: float16 or float32."""
    shard_rows: int = DEFAULT_SHARD_ROWS
    """Rows per shard file."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("context", "every", "batch_size", "shard_rows"), 1)
        checks.require_at_least(self, ("skip_first", "max_tokens"), 0)
        if self.skip_first >= self.context:
            raise ValueError(f"skip_first must be < context = {self.context}, got {self.skip_first}")
        checks.require_choice("dtype", self.dtype, DTYPES)


def kept_positions(config: TokenExtractConfig) -> np.ndarray:
    """Positions within a context whose activations are stored: ``skip_first``, then every ``every``-th."""
    return np.arange(config.skip_first, config.context, config.every)


def documents_of(
    tokens: np.ndarray, offsets: np.ndarray, end_of_text: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(document, start)`` (int64) per offset: end-of-text tokens before it, its document's first offset."""
    offsets = np.asarray(offsets, dtype=np.int64)
    ends = (
        np.flatnonzero(np.asarray(tokens) == end_of_text)
        if end_of_text is not None
        else np.zeros(0, np.int64)
    )
    documents = np.searchsorted(ends, offsets, side="left").astype(np.int64)
    starts = np.zeros(len(offsets), dtype=np.int64)
    later = documents > 0
    starts[later] = ends[documents[later] - 1] + 1
    return documents, starts


def token_table(tokens: np.ndarray, offsets: np.ndarray, context: int, end_of_text: int | None) -> dict:
    """``offset``, ``token``, ``document`` and ``position`` (int64 arrays) of the rows at ``offsets``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    documents, _ = documents_of(tokens, offsets, end_of_text)
    values = np.asarray(tokens[offsets], dtype=np.int64) if len(offsets) else np.zeros(0, np.int64)
    return {"offset": offsets, "token": values, "document": documents, "position": offsets % context}


def extract_token_activations(
    model: torch.nn.Module,
    tokens: np.ndarray,
    out: str | Path,
    config: TokenExtractConfig = TokenExtractConfig(),
    metadata: dict | None = None,
    end_of_text: int | None = None,
    progress: bool = True,
    forward: Callable[[torch.nn.Module, torch.Tensor], object] | None = None,
) -> ExtractReport:
    """Store the activations at ``config.hook`` of ``model`` on ``tokens`` in the store ``out``.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM taking token ids ``(B, T)`` (harmono's GPT, a ``transformers`` causal LM, ...).
    tokens : np.ndarray
        ``(N,)`` the token stream.
    out : str or Path
        The store (resumed if it holds shards of the same settings).
    config : TokenExtractConfig
    metadata : dict, optional
        Added to the store's metadata (the model's and the source's names).
    end_of_text : int, optional
        The token that ends a document (for the ``document`` column).
    progress : bool
        Show a progress bar.
    forward : callable, optional
        ``forward(model, idx)`` runs the model (default: ``model(idx)``).

    Returns
    -------
    ExtractReport
        Rows stored by this call and rows found already.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or len(tokens) < config.context:
        raise ValueError(f"expected a 1-D token stream of at least context = {config.context} tokens, "
                         f"got shape {tokens.shape}")  # fmt: skip
    device = resolve_device(config.device)
    model = model.to(device).eval()
    point = resolve_hook(model, config.hook)
    run = forward or (lambda m, idx: m(idx))
    contexts = len(tokens) // config.context
    positions = kept_positions(config)
    offsets = (np.arange(contexts)[:, None] * config.context + positions[None, :]).reshape(-1)
    if config.max_tokens:
        offsets = offsets[: config.max_tokens]
    with torch.no_grad():
        idx = torch.as_tensor(np.asarray(tokens[: config.context], dtype=np.int64))[None].to(device)
        dim = capture(model, point, lambda: run(model, idx)).shape[-1]
    settings = {key: value for key, value in asdict(config).items() if key in STORED_SETTINGS}
    store_metadata = {**(metadata or {}), **settings, "hook_path": point.path, "end_of_text": end_of_text,
                      "labels": "token ids", "class_names": []}  # fmt: skip
    ids = [str(offset) for offset in offsets.tolist()]
    start = time.perf_counter()
    with FeatureStoreWriter(
        out, dim, store_metadata, dtype=config.dtype, shard_rows=config.shard_rows
    ) as writer:
        todo = writer.remaining(ids)
        wanted = {int(offsets[i]) for i in todo}
        pending = sorted({offset // config.context for offset in wanted})
        with torch.no_grad(), tqdm(total=len(todo), desc=f"{point.name} activations", unit="tok",
                                   disable=not progress) as bar:  # fmt: skip
            for begin in range(0, len(pending), config.batch_size):
                chosen = pending[begin : begin + config.batch_size]
                windows = np.stack([tokens[c * config.context : (c + 1) * config.context] for c in chosen])
                idx = torch.as_tensor(windows.astype(np.int64)).to(device)
                acts = capture(model, point, lambda batch=idx: run(model, batch)).float().cpu()
                rows, row_ids, labels = [], [], []
                for row, context_index in enumerate(chosen):
                    for position in positions:
                        offset = context_index * config.context + int(position)
                        if offset not in wanted:
                            continue
                        rows.append(acts[row, position])
                        row_ids.append(str(offset))
                        labels.append(int(tokens[offset]))
                if rows:
                    writer.append(torch.stack(rows), row_ids, labels)
                    bar.update(len(rows))
    store = FeatureStore(out)
    table = token_table(tokens, np.asarray([int(i) for i in store.ids]), config.context, end_of_text)
    table["stream"] = np.asarray(
        tokens[: (int(offsets.max()) // config.context + 1) * config.context], np.int64
    )
    _write_token_table(Path(out) / TOKENS_FILE, table)
    return ExtractReport(Path(out), len(todo), len(ids) - len(todo), time.perf_counter() - start)


def _write_token_table(path: Path, table: dict) -> None:
    from safetensors.numpy import save

    blob = save({name: np.ascontiguousarray(values) for name, values in table.items()})
    write_atomically(path, lambda handle: handle.write(blob))
