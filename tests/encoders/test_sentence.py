"""all-MiniLM-L6-v2 sentence embeddings: the pooling against a float64 loop, and meaning against nonsense."""

import pytest
import torch

from harmono.encoders.sentence import mean_pool


def naive_pool(hidden, mask):
    """Mean over the unmasked positions, divided by its Euclidean norm, one sample at a time in float64."""
    rows = []
    for sample, keep in zip(hidden.double(), mask, strict=True):
        total, count = torch.zeros(sample.shape[1], dtype=torch.float64), 0
        for vector, flag in zip(sample, keep, strict=True):
            if flag:
                total, count = total + vector, count + 1
        mean = total / count
        rows.append(mean / mean.square().sum().sqrt())
    return torch.stack(rows)


def test_mean_pooling_matches_a_naive_float64_loop():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 5, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0]])
    assert (mean_pool(hidden.double(), mask) - naive_pool(hidden, mask)).abs().max() < 1e-12
    assert (mean_pool(hidden, mask).double() - naive_pool(hidden, mask)).abs().max() < 1e-6


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers", reason="transformers is not installed (harmono[encoders])")
    from harmono.encoders.sentence import SentenceEmbedder, minilm_folder

    try:
        minilm_folder()
    except ModuleNotFoundError as err:
        pytest.skip(str(err))
    return SentenceEmbedder()


def test_minilm_embeds_as_the_model_defines_it(minilm):
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."]
    vectors = minilm.embed(texts)
    assert vectors.shape == (3, 384) and torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6 > 0.2 > vectors[0] @ vectors[2]  # the paraphrase ranks first
    batch = minilm.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**batch).last_hidden_state
    assert (vectors.double() - naive_pool(hidden, batch["attention_mask"])).abs().max() < 1e-5
    assert torch.allclose(minilm.embed(texts[:1]), vectors[:1], atol=1e-5)  # padding does not change a row
