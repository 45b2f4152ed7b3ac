"""MonoScore with one-hot token embeddings, in one pass, against the dense definition with one-hot vectors."""

import pytest
import torch
import torch.nn.functional as F

from harmono.mono import mono_score
from harmono.mono.token_identity import TokenIdentityMonoScore

N, M, VOCAB = 300, 12, 9


def reference(acts, tokens):
    """harmono's dense MonoScore with the one-hot embedding of each token (pairwise-tested elsewhere)."""
    return mono_score(acts.double(), F.one_hot(tokens, VOCAB).double())


def cases():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (N,), generator=generator)
    sparse = torch.rand(N, M, generator=generator) * (torch.rand(N, M, generator=generator) < 0.2)
    sparse[:, 0] = (tokens == 3) * 2.0  # fires on one token only: score 1
    sparse[:, 1] = 0.0  # never fires: dead
    sparse[:, 2] = 0.0
    sparse[7, 2] = 1.0  # fires once: dead
    dense = torch.randn(N, M, generator=generator) + tokens[:, None] * 0.3  # negative values, min != 0
    return tokens, sparse, dense


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("batch", [N, 64, 7])
def test_it_equals_the_dense_score_with_one_hot_embeddings(kind, batch):
    tokens, sparse, dense = cases()
    acts = sparse if kind == "sparse" else dense
    metric = TokenIdentityMonoScore(M)
    for begin in range(0, N, batch):
        metric.update(acts[begin : begin + batch], tokens[begin : begin + batch])
    got, expected = metric.compute(), reference(acts, tokens)
    assert torch.equal(got.isnan(), expected.isnan())
    alive = ~expected.isnan()
    assert (got[alive] - expected[alive]).abs().max() < 1e-10
    if kind == "sparse":
        assert got[0] == pytest.approx(1.0) and got[1:3].isnan().all()


def test_bad_input_is_named():
    metric = TokenIdentityMonoScore(M)
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 12\)"):
        metric.update(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative integer tokens"):
        metric.update(torch.zeros(3, M), torch.tensor([0, -1, 2]))
