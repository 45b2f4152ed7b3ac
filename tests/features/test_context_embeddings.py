"""Context embeddings of a token store: the window of each row, row alignment, resuming, a wrong stream."""

import numpy as np
import pytest
import torch

from harmono.features import FeatureStore
from harmono.features.context_embeddings import context_spans, embed_token_contexts
from harmono.features.token_activations import TokenExtractConfig, extract_token_activations
from harmono.models.gpt import GPT, GPTConfig

END = 0


def tokens_with_documents():
    tokens = np.arange(1, 61, dtype=np.uint16) % 50 + 1
    tokens[[11, 35]] = END  # documents: 0..11, 12..35, 36..59
    return tokens


def decode(ids):
    return " ".join(str(i) for i in ids)


def embed(texts):
    """A stand-in embedder that records what it was asked: the length and the sum of each context."""
    rows = [[len(t.split()), sum(int(w) for w in t.split())] for t in texts]
    return torch.tensor(rows, dtype=torch.float32)


@pytest.fixture
def token_store(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=51, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()
    config = TokenExtractConfig(hook="resid.0", context=10, skip_first=1, every=2, device="cpu", shard_rows=5)
    extract_token_activations(model, tokens_with_documents(), tmp_path / "tokens", config, progress=False)
    return tmp_path / "tokens"


def test_spans_stop_at_the_document_start():
    assert context_spans(np.array([3, 13, 40]), tokens_with_documents(), 4, END) == [
        (0, 4),
        (12, 14),
        (37, 41),
    ]
    assert context_spans(np.array([13]), tokens_with_documents(), 4, None) == [(10, 14)]


def test_each_row_gets_the_embedding_of_its_own_window(tmp_path, token_store):
    tokens = tokens_with_documents()
    report = embed_token_contexts(token_store, tokens, decode, embed, tmp_path / "emb", window=4,
                                  end_of_text=END, batch_size=3, progress=False)  # fmt: skip
    store, emb = FeatureStore(token_store), FeatureStore(tmp_path / "emb")
    assert (
        emb.ids == store.ids
        and emb.labels.tolist() == store.labels.tolist()
        and report.extracted == len(store)
    )
    got = emb.take(np.arange(len(emb)), "float32")
    for row, row_id in enumerate(store.ids):
        offset = int(row_id)
        start = max(offset - 3, int(np.flatnonzero(tokens[:offset] == END).max(initial=-1)) + 1)
        window = tokens[start : offset + 1].astype(int)
        assert got[row].tolist() == [len(window), window.sum()]
    assert emb.metadata["window"] == 4


def test_an_interrupted_run_resumes_and_a_wrong_stream_is_refused(tmp_path, token_store):
    tokens = tokens_with_documents()
    calls = []

    def dies(texts):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return embed(texts)

    with pytest.raises(KeyboardInterrupt):
        embed_token_contexts(token_store, tokens, decode, dies, tmp_path / "emb", window=4, end_of_text=END,
                             batch_size=5, shard_rows=5, progress=False)  # fmt: skip
    report = embed_token_contexts(token_store, tokens, decode, embed, tmp_path / "emb", window=4,
                                  end_of_text=END, batch_size=5, shard_rows=5, progress=False)  # fmt: skip
    assert report.skipped > 0 and FeatureStore(tmp_path / "emb").ids == FeatureStore(token_store).ids
    with pytest.raises(ValueError, match="expected the token stream it was extracted from"):
        embed_token_contexts(token_store, tokens[::-1].copy(), decode, embed, tmp_path / "x", progress=False)
