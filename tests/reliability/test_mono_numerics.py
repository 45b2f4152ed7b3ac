"""MonoScore under large offsets and scales, MonoLoss on non-finite input, class purity with no label."""

import pytest
import torch

from harmono import MonoScore, class_purity, mono_loss, mono_score, mono_score_pairwise

N, M, D, K = 192, 8, 12, 3
OFFSETS = [0.0, 3e6, 1e7, 1e8]
SCALES = [1e-30, 1.0, 1e19]
ATOL = {torch.float64: 1e-12, torch.float32: 1e-6}
MERGED_ONLY = "ignore:The ``compute`` method of metric MonoScore was called before the ``update``"


def shifted_problem(dtype, offset, scale, seed=0):
    """Gaussian and ReLU latents moved by ``offset`` then scaled; the pairwise score is exact on them."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(N, M, generator=gen, dtype=torch.float64)
    base[:, M // 2 :] = torch.relu(base[:, M // 2 :])
    acts = ((base + offset) * scale).to(dtype)
    emb = torch.randn(N, D, generator=gen, dtype=torch.float64).to(dtype)
    return acts, emb


def assert_scores_equal(actual, expected, atol):
    assert torch.equal(torch.isnan(actual), torch.isnan(expected)), (actual, expected)
    torch.testing.assert_close(actual.nan_to_num(0.0), expected.nan_to_num(0.0), rtol=0, atol=atol)


def streamed(acts, emb, sizes):
    metric, start = MonoScore(M, D), 0
    for size in sizes:
        metric.update(acts[start : start + size], emb[start : start + size])
        start += size
    assert start == N
    return metric


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("offset", OFFSETS)
def test_scores_match_the_pairwise_definition_under_offset_and_scale(dtype, offset, scale):
    acts, emb = shifted_problem(dtype, offset, scale)
    reference = mono_score_pairwise(acts.double(), emb.double())
    if dtype == torch.float64:  # float32 + 1e8 rounds unit-spread latents to constants: all dead there
        assert not torch.isnan(reference).any()
    assert_scores_equal(mono_score(acts, emb), reference, ATOL[dtype])
    assert_scores_equal(streamed(acts, emb, [1, 40, 7, 144]).compute(), reference, ATOL[dtype])
    every_latent = acts.topk(M, dim=1)  # sparse input listing every latent in every row
    assert_scores_equal(mono_score(every_latent, emb, num_latents=M), reference, ATOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset, scale", [(0.0, 1e-30), (1e8, 1.0), (3e6, 1e19)])
def test_topk_sparse_input_matches_pairwise_under_offset_and_scale(dtype, offset, scale):
    acts, emb = shifted_problem(dtype, offset, scale)
    top = acts.topk(K, dim=1)
    dense = torch.zeros_like(acts).scatter_(1, top.indices, top.values)
    reference = mono_score_pairwise(dense.double(), emb.double())
    assert_scores_equal(mono_score(top, emb, num_latents=M), reference, ATOL[dtype])
    metric = MonoScore(M, D)
    metric.update(acts[: N // 2].topk(M, dim=1), emb[: N // 2])  # every latent listed: references far from 0
    metric.update(acts[N // 2 :], emb[N // 2 :])
    assert_scores_equal(metric.compute(), mono_score_pairwise(acts.double(), emb.double()), ATOL[dtype])


@pytest.mark.filterwarnings(MERGED_ONLY)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset, scale", [(1e8, 1.0), (3e6, 1e19), (1e7, 1e-30)])
def test_merged_metric_states_equal_one_pass(dtype, offset, scale):
    acts, emb = shifted_problem(dtype, offset, scale)
    step = torch.tensor(0.5 * scale * offset**0.5, dtype=dtype)
    acts[: N // 2] -= step  # the shards have different minima, hence different references
    one_pass = streamed(acts, emb, [N]).compute()
    parts = [streamed_part(acts, emb, rows) for rows in (slice(0, 50), slice(50, 51), slice(51, N))]
    merged = MonoScore(M, D)
    for part in parts:
        merged.merge_state(part)
    assert_scores_equal(merged.compute(), one_pass, ATOL[dtype])
    forwarded = MonoScore(M, D)
    for start in range(0, N, 64):
        forwarded(acts[start : start + 64], emb[start : start + 64])
    assert_scores_equal(forwarded.compute(), one_pass, ATOL[dtype])
    assert_scores_equal(one_pass, mono_score_pairwise(acts.double(), emb.double()), ATOL[dtype])


def streamed_part(acts, emb, rows):
    metric = MonoScore(M, D)
    metric.update(acts[rows], emb[rows])
    return metric


@pytest.mark.filterwarnings(MERGED_ONLY)
def test_merging_leaves_the_incoming_metric_unchanged_and_accepts_empty_states():
    acts, emb = shifted_problem(torch.float64, 1e8, 1.0)
    first, second = streamed_part(acts, emb, slice(0, 96)), streamed_part(acts, emb, slice(96, N))
    second_before = second.compute().clone()
    first.merge_state(MonoScore(M, D))  # an empty state keeps the reference
    first.merge_state(second)
    assert_scores_equal(second.compute(), second_before, 0.0)
    empty = MonoScore(M, D)
    empty.merge_state(first)
    assert_scores_equal(empty.compute(), mono_score_pairwise(acts, emb), ATOL[torch.float64])


def test_scores_are_invariant_to_a_large_latent_rescaling():
    acts, emb = shifted_problem(torch.float32, 0.0, 1.0)
    gain = torch.tensor([1e-30, 1e-12, 1e-3, 1.0, 1e3, 1e12, 1e19, 1e30])
    assert_scores_equal(mono_score(acts * gain, emb), mono_score(acts, emb), 1e-6)


def batch_with(target, value, dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    acts = torch.relu(torch.randn(32, 6, generator=gen, dtype=dtype)).requires_grad_(False)
    emb = torch.randn(32, 5, generator=gen, dtype=dtype)
    (acts if target == "acts" else emb)[3, 1] = value
    return acts, emb


NON_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("average", ["active", "all"])
@pytest.mark.parametrize("target", ["acts", "emb"])
@pytest.mark.parametrize("value", NON_FINITE)
def test_loss_is_never_finite_on_non_finite_input(value, target, average):
    acts, emb = batch_with(target, value)
    assert not torch.isfinite(mono_loss(acts, emb, average=average, validate=False))
    if target == "acts" and value != -float("inf"):  # topk keeps NaN and +inf
        sparse = acts.topk(K, dim=1)
        assert not torch.isfinite(mono_loss(sparse, emb, num_latents=6, average=average, validate=False))
    with pytest.raises(ValueError, match=f"^{target}"):
        mono_loss(acts, emb, average=average)


def test_an_optimizer_step_on_non_finite_input_shows_a_non_finite_loss():
    acts, emb = batch_with("acts", float("nan"))
    layer = torch.nn.Linear(6, 6)
    loss = mono_loss(layer(acts), emb, validate=False)
    assert not torch.isfinite(loss)


def test_purity_with_no_labelled_sample_says_so():
    acts = torch.rand(5, 3)
    with pytest.raises(ValueError, match=r"class indices in \[0, C\), got -1 for every sample"):
        class_purity(acts, torch.full((5,), -1))
