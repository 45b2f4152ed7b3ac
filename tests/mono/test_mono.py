"""MonoScore: single pass and streaming metric against the pairwise definition; summaries; the toy claim."""

import math

import numpy as np
import pytest
import torch

import harmono.mono.metric
from harmono import MonoScore, SparseActivations, mono_score, mono_score_pairwise, summarize
from naive_mono import naive_mono_score

N, M, D = 120, 24, 10


def hard_problem(n=N, m=M, d=D, dtype=torch.float64, seed=0):
    """Activations with every awkward case, and unnormalised embeddings.

    Columns: 0 all zero, 1 constant 2.5, 2 one sample above a negative min, 3 one active (ReLU-like),
    4 two values only (ties at both ends), 5 integer ties, 6 large offset, 7 two actives, then a mix of
    dense Gaussian (negative minima) and sparse ReLU columns.
    """
    gen = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, m, generator=gen, dtype=torch.float64)
    acts[:, m // 2 :] = torch.relu(acts[:, m // 2 :] - 1.0)
    acts[:, 0] = 0.0
    acts[:, 1] = 2.5
    acts[:, 2] = -1.5
    acts[7, 2] = 0.25
    acts[:, 3] = 0.0
    acts[11, 3] = 4.0
    acts[:, 4] = (torch.rand(n, generator=gen) < 0.3).double() * 2.0 - 1.0
    acts[:, 5] = torch.randint(0, 3, (n,), generator=gen).double()
    acts[:, 6] = 300.0 + torch.rand(n, generator=gen, dtype=torch.float64)
    acts[:, 7] = 0.0
    acts[[3, 40], 7] = torch.tensor([1.0, 0.5], dtype=torch.float64)
    scale = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 10 + 0.1
    emb = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    return acts.to(dtype), emb.to(dtype)


def assert_scores_equal(actual, expected, atol):
    actual, expected = actual.double(), expected.double()
    assert torch.equal(torch.isnan(actual), torch.isnan(expected)), (actual, expected)
    torch.testing.assert_close(actual.nan_to_num(0.0), expected.nan_to_num(0.0), rtol=0, atol=atol)


def test_pairwise_equals_the_explicit_pair_list():
    acts, emb = hard_problem()
    expected = naive_mono_score(acts, emb)
    assert_scores_equal(mono_score_pairwise(acts, emb), expected, atol=1e-12)
    assert_scores_equal(mono_score_pairwise(acts, emb, block_bytes=1), expected, atol=1e-12)
    assert int(torch.isnan(expected).sum()) == 4  # all-zero, constant, and the two single-active columns


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_single_pass_equals_pairwise_on_hard_cases(dtype, atol):
    acts, emb = hard_problem(dtype=dtype)
    reference = mono_score_pairwise(acts.double(), emb.double())
    assert_scores_equal(mono_score(acts, emb), reference, atol)


def test_dead_zero_convention():
    acts, emb = hard_problem()
    nan_scores = mono_score(acts, emb)
    zero_scores = mono_score(acts, emb, dead="zero")
    dead = torch.isnan(nan_scores)
    assert dead.sum() == 4
    assert torch.equal(zero_scores[dead], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(zero_scores[~dead], nan_scores[~dead])
    assert_scores_equal(mono_score_pairwise(acts, emb, dead="zero"), zero_scores, atol=1e-10)


def test_invariant_to_a_latent_rescaling_and_shift():
    acts, emb = hard_problem()
    gain = torch.rand(M, dtype=torch.float64) * 5 + 0.1
    offset = torch.randn(M, dtype=torch.float64) * 3
    assert_scores_equal(mono_score(acts * gain + offset, emb), mono_score(acts, emb), atol=1e-9)


@pytest.mark.parametrize("offset, scale", [(1e3, 1.0), (1e5, 1.0), (100.0, 1e-3), (-1e4, 1.0)])
def test_large_offsets_keep_float32_accuracy(offset, scale):
    gen = torch.Generator().manual_seed(3)
    acts = (offset + scale * torch.randn(500, 8, generator=gen, dtype=torch.float64)).float()
    emb = torch.randn(500, 16, generator=gen)
    metric = MonoScore(8, 16)
    for chunk in range(0, 500, 64):
        metric.update(acts[chunk : chunk + 64], emb[chunk : chunk + 64])
    reference = mono_score_pairwise(acts.double(), emb.double())
    assert not torch.isnan(reference).any()
    assert_scores_equal(metric.compute(), reference, atol=1e-5)


def split_points(n, sizes):
    points, start = [], 0
    for size in sizes:
        points.append((start, min(start + size, n)))
        start += size
        if start >= n:
            break
    if start < n:
        points.append((start, n))
    return points


BATCHINGS = {
    "one batch": [N],
    "single samples": [1] * N,
    "uneven": [1, 7, 50, 3, 29, 30],
    "two halves": [N // 2, N - N // 2],
}


@pytest.mark.parametrize("batching", list(BATCHINGS))
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_streaming_metric_equals_pairwise_for_any_batching(batching, dtype, atol):
    acts, emb = hard_problem(dtype=dtype)
    metric = MonoScore(M, D)
    for start, stop in split_points(N, BATCHINGS[batching]):
        metric.update(acts[start:stop], emb[start:stop])
    assert_scores_equal(metric.compute(), mono_score_pairwise(acts.double(), emb.double()), atol)


def relu_stream(n=N, dtype=torch.float32):
    gen = torch.Generator().manual_seed(4)
    acts = torch.relu(torch.randn(n, M, generator=gen, dtype=torch.float64) - 0.5).to(dtype)
    return acts, torch.randn(n, D, generator=gen, dtype=torch.float64).to(dtype)


def test_float32_partial_sums_move_to_float64_without_changing_the_scores(monkeypatch):
    monkeypatch.setattr(harmono.mono.metric, "FLUSH_ROWS", 50)
    acts, emb = relu_stream()
    metric = MonoScore(M, D)
    for start in range(0, N, 10):
        metric.update(acts[start : start + 10], emb[start : start + 10])
        if start + 10 == 50:  # just flushed
            assert metric.act_emb.abs().sum() > 0 and metric.act_emb_recent.abs().sum() == 0
    assert metric.act_emb_recent.abs().sum() > 0  # 20 rows since the flush at 100
    assert_scores_equal(metric.compute(), mono_score_pairwise(acts.double(), emb.double()), atol=1e-5)


def test_forward_and_merge_state_keep_counting_rows_for_the_flush(monkeypatch):
    monkeypatch.setattr(harmono.mono.metric, "FLUSH_ROWS", 50)
    acts, emb = relu_stream()
    metric = MonoScore(M, D)
    for start in range(0, 60, 10):
        metric(acts[start : start + 10], emb[start : start + 10])
    assert metric._rows_since_flush == 10 and metric.act_emb_recent.abs().sum() > 0
    other = MonoScore(M, D)
    other.update(acts[60:], emb[60:])
    metric.merge_state(other)
    assert metric.act_emb_recent.abs().sum() == 0 and metric._rows_since_flush == 0
    assert_scores_equal(metric.compute(), mono_score_pairwise(acts.double(), emb.double()), atol=1e-5)


def test_float64_input_keeps_nearly_single_active_latents():
    """With float64 batches the dead test uses float64 rounding: a second activation of 1e-6 still counts."""
    acts, emb = relu_stream(dtype=torch.float64)
    acts[:, 0] = 0.0
    acts[3, 0], acts[70, 0] = 1.0, 1e-6
    reference = mono_score_pairwise(acts, emb)
    assert not torch.isnan(reference[0])
    assert_scores_equal(mono_score(acts, emb), reference, atol=1e-10)
    assert torch.isnan(mono_score(acts.float(), emb.float())[0])  # float32: below the rounding, dead


def topk_problem(n=N, m=M, k=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    pre = torch.randn(n, m, generator=gen)
    values, indices = torch.relu(pre).topk(k, dim=1)
    dense = torch.zeros(n, m).scatter_(1, indices, values)
    emb = torch.randn(n, D, generator=gen) * 3
    return values, indices, dense, emb


def test_sparse_input_equals_dense_input():
    values, indices, dense, emb = topk_problem()
    reference = mono_score_pairwise(dense.double(), emb.double())
    assert_scores_equal(mono_score((values, indices), emb, num_latents=M), reference, atol=1e-5)
    metric = MonoScore(M, D)
    for start, stop in split_points(N, [13, 40, 2, 65]):
        metric.update(SparseActivations(values[start:stop], indices[start:stop]), emb[start:stop])
    assert_scores_equal(metric.compute(), reference, atol=1e-5)


def test_sparse_values_can_be_negative_and_cover_every_row():
    """A latent listed in every row has no implicit zero: its min is its smallest listed value."""
    gen = torch.Generator().manual_seed(5)
    n, m = 40, 6
    indices = torch.stack([torch.tensor([0]), torch.tensor([1])], dim=1).repeat(n, 1)
    indices[n // 2 :, 1] = 2
    emb = torch.randn(n, 5, generator=gen)
    for values in (torch.randn(n, 2, generator=gen) - 3.0, torch.rand(n, 2, generator=gen) + 5.0):
        dense = torch.zeros(n, m).scatter_(1, indices, values)
        reference = mono_score_pairwise(dense.double(), emb.double())
        assert not torch.isnan(reference[0])  # latent 0, listed in every row, has a score
        assert_scores_equal(mono_score((values, indices), emb, num_latents=m), reference, atol=1e-5)


def test_topk_result_is_accepted_as_sparse_input():
    values, indices, dense, emb = topk_problem()
    pre = torch.zeros_like(dense).scatter_(1, indices, values + 1.0)
    top = pre.topk(5, dim=1)
    shifted_back = SparseActivations(top.values - 1.0, top.indices)
    assert_scores_equal(mono_score(top, emb, num_latents=M), mono_score(pre, emb), atol=1e-6)
    assert_scores_equal(mono_score(shifted_back, emb, num_latents=M), mono_score(dense, emb), atol=1e-6)


def test_mixed_dense_and_sparse_updates_and_merge_state():
    values, indices, dense, emb = topk_problem()
    first, second = MonoScore(M, D), MonoScore(M, D)
    first.update(dense[:50], emb[:50])
    second.update((values[50:], indices[50:]), emb[50:])
    first.merge_state(second)
    assert_scores_equal(first.compute(), mono_score_pairwise(dense.double(), emb.double()), atol=1e-5)
    first.reset()
    first.update(dense, emb)
    assert_scores_equal(first.compute(), mono_score(dense, emb), atol=1e-12)


def test_metric_dead_zero_and_forward_gives_the_batch_score():
    acts, emb = hard_problem()
    metric = MonoScore(M, D, dead="zero")
    batch_value = metric(acts[:60], emb[:60])
    assert_scores_equal(batch_value, mono_score(acts[:60], emb[:60], dead="zero"), atol=1e-12)
    metric.update(acts[60:], emb[60:])
    assert_scores_equal(metric.compute(), mono_score(acts, emb, dead="zero"), atol=1e-10)


def test_half_precision_inputs_are_scored_in_float32():
    acts, emb = hard_problem(dtype=torch.float32)
    acts, emb = acts[:, 8:].bfloat16(), emb.bfloat16()
    reference = mono_score_pairwise(acts.double(), emb.double())
    assert_scores_equal(mono_score(acts, emb), reference, atol=1e-5)


def test_summarize_states_both_conventions():
    scores = torch.tensor([0.2, math.nan, 0.9, -0.1, 0.5, math.nan, 0.7], dtype=torch.float64)
    summary = summarize(scores)
    alive = np.array([0.2, 0.9, -0.1, 0.5, 0.7])
    as_zero = np.array([0.2, 0.0, 0.9, -0.1, 0.5, 0.0, 0.7])
    assert (summary.num_latents, summary.num_dead) == (7, 2)
    assert summary.mean == pytest.approx(alive.mean())
    assert summary.median == pytest.approx(np.median(alive))
    assert summary.p90 == pytest.approx(np.percentile(alive, 90))
    assert summary.mean_dead_as_zero == pytest.approx(as_zero.mean())
    assert summary.median_dead_as_zero == pytest.approx(np.median(as_zero))
    assert summary.p90_dead_as_zero == pytest.approx(np.percentile(as_zero, 90))
    assert summary.as_dict()["num_dead"] == 2
    all_dead = summarize(torch.full((3,), math.nan))
    assert all_dead.num_dead == 3 and math.isnan(all_dead.mean) and all_dead.mean_dead_as_zero == 0.0


def test_toy_cluster_latents_score_near_one_and_random_latents_near_the_mean_similarity():
    """Latents that fire on one tight cluster are monosemantic; latents firing on random samples are not."""
    gen = torch.Generator().manual_seed(0)
    clusters, per_cluster, dim = 8, 100, 32
    centers = torch.randn(clusters, dim, generator=gen, dtype=torch.float64)
    cluster_of = torch.arange(clusters).repeat_interleave(per_cluster)
    emb = centers[cluster_of] + 0.05 * torch.randn(
        clusters * per_cluster, dim, generator=gen, dtype=torch.float64
    )
    n = emb.shape[0]
    mono_latents, random_latents = clusters, 16
    acts = torch.zeros(n, mono_latents + random_latents, dtype=torch.float64)
    for c in range(clusters):
        members = cluster_of == c
        acts[members, c] = torch.rand(int(members.sum()), generator=gen, dtype=torch.float64) + 0.1
    fires = torch.rand(n, random_latents, generator=gen) < 0.2
    acts[:, mono_latents:] = fires * torch.rand(n, random_latents, generator=gen, dtype=torch.float64)
    scores = mono_score(acts, emb)
    unit = emb / emb.norm(dim=1, keepdim=True)
    mean_similarity = float(((unit @ unit.T).sum() - n) / (n * (n - 1)))
    assert scores[:mono_latents].min() > 0.99
    assert abs(mean_similarity) < 0.3
    torch.testing.assert_close(
        scores[mono_latents:],
        torch.full((random_latents,), mean_similarity, dtype=torch.float64),
        rtol=0,
        atol=0.06,
    )
