"""Class purity against a per-latent loop; streaming, sparse and dense agree."""

import math

import torch

from harmono import ClassPurity, class_purity
from naive_mono import naive_purity

N, M, C = 90, 15, 4


def purity_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (N,), generator=gen)
    acts = torch.relu(torch.randn(N, M, generator=gen) - 0.5)
    acts[:, 0] = 0.0  # never active
    acts[:, 1] = (labels == 2) * (torch.rand(N, generator=gen) + 0.5)  # pure class 2
    acts[:, 2] = torch.randn(N, generator=gen)  # negative values never activate
    return acts, labels


def assert_matches_naive(result, acts, labels, threshold=0.0):
    for k, (binary, weighted, dominant, active) in enumerate(naive_purity(acts, labels, C, threshold)):
        assert int(result.dominant_class[k]) == dominant
        assert int(result.num_active[k]) == active
        if math.isnan(binary):
            assert math.isnan(result.binary[k]) and math.isnan(result.weighted[k])
        else:
            assert float(result.binary[k]) == binary
            assert abs(float(result.weighted[k]) - weighted) < 1e-6  # float32 batch sums


def test_purity_matches_a_per_latent_loop():
    acts, labels = purity_problem()
    result = class_purity(acts, labels, num_classes=C)
    assert_matches_naive(result, acts, labels)
    assert result.binary[1] == 1.0 and result.weighted[1] == 1.0 and result.dominant_class[1] == 2
    assert result.dominant_class[0] == -1


def test_threshold_and_inferred_class_count():
    acts, labels = purity_problem(seed=1)
    labels[0] = C - 1
    result = class_purity(acts, labels, threshold=0.3)
    assert_matches_naive(result, acts, labels, threshold=0.3)


def test_streaming_sparse_and_dense_agree():
    acts, labels = purity_problem(seed=2)
    values, indices = acts.topk(3, dim=1)
    dense_topk = torch.zeros_like(acts).scatter_(1, indices, values)
    expected = class_purity(dense_topk, labels, num_classes=C)
    metric = ClassPurity(M, C)
    metric.update((values[:31], indices[:31]), labels[:31])
    metric.update(dense_topk[31:], labels[31:])
    streamed = metric.compute()
    sparse = class_purity((values, indices), labels, num_classes=C, num_latents=M)
    for result in (streamed, sparse):
        for got, want in zip(result, expected, strict=True):
            torch.testing.assert_close(got, want, equal_nan=True)
