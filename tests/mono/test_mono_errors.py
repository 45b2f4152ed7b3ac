"""Bad input to the MonoScore, MonoLoss and purity functions raises a ValueError that says what was wrong."""

import math

import pytest
import torch

from harmono import (
    ClassPurity,
    MonoScore,
    class_purity,
    mono_loss,
    mono_score,
    mono_score_pairwise,
    summarize,
)

N, M, D = 10, 6, 4


def good():
    torch.manual_seed(0)
    return torch.relu(torch.randn(N, M)), torch.randn(N, D)


SCORERS = [
    pytest.param(lambda a, e: mono_score(a, e), id="mono_score"),
    pytest.param(lambda a, e: MonoScore(M, D).update(a, e), id="MonoScore.update"),
    pytest.param(lambda a, e: mono_loss(a, e), id="mono_loss"),
    pytest.param(lambda a, e: mono_score_pairwise(a, e), id="mono_score_pairwise"),
]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda a, e: (a[:-1], e), r"emb must have one row per sample of acts \(N = 9\)"),
        (lambda a, e: (a[0], e), r"acts must have shape \(N, M\) \(2-D\), got shape \(6,\)"),
        (lambda a, e: (a, e[None]), r"emb must have shape \(N, D\) \(2-D\), got shape \(1, 10, 4\)"),
        (lambda a, e: (a[:0], e[:0]), r"acts must not be empty"),
        (lambda a, e: (a.long(), e), r"acts must be a floating-point tensor, got dtype torch.int64"),
        (
            lambda a, e: (a.index_put((torch.tensor([2]), torch.tensor([3])), torch.tensor(math.nan)), e),
            r"acts contains 1 non-finite value\(s\) \(1 NaN, 0 inf\)",
        ),
        (
            lambda a, e: (a, e.index_put((torch.tensor([1]),), torch.tensor(math.inf))),
            r"emb contains 4 non-finite value\(s\) \(0 NaN, 4 inf\)",
        ),
        (
            lambda a, e: (a, e.index_put((torch.tensor([1]),), torch.tensor(0.0))),
            r"emb has 1 zero vector\(s\): the cosine similarity is undefined",
        ),
        (lambda a, e: (a.numpy(), e), r"acts must be a torch.Tensor, got ndarray"),
    ],
)
def test_bad_dense_input(scorer, make, message):
    acts, emb = make(*good())
    with pytest.raises(ValueError, match=message):
        scorer(acts, emb)


def sparse_good():
    values, indices = torch.rand(N, 3), torch.stack([torch.randperm(M)[:3] for _ in range(N)])
    return values, indices


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda v, i: (v, i.index_put((torch.tensor([4]), torch.tensor([0])), torch.tensor(-1))),
            r"acts indices must lie in \[0, 5\] \(num_latents = 6\), got values in \[-1,",
        ),
        (
            lambda v, i: (v, i.index_put((torch.tensor([4]), torch.tensor([0])), torch.tensor(M))),
            r"acts indices must lie in \[0, 5\].*got values in \[0, 6\]",
        ),
        (
            lambda v, i: (v, torch.cat([i[:, :1], i[:, :1], i[:, 2:]], dim=1)),
            r"acts must list a latent at most once per row, got 10 repeated \(row, latent\) pair\(s\)",
        ),
        (lambda v, i: (v, i.float()), r"acts indices must be an integer tensor"),
        (lambda v, i: (v, i[:, :2]), r"acts indices must have the shape of values \(10, 3\), got \(10, 2\)"),
        (lambda v, i: (v, i, i), r"sparse acts must be a pair \(values, indices\), got a tuple of 3 items"),
        (lambda v, i: (v[:0], i[:0]), r"acts values must not be empty"),
    ],
)
def test_bad_sparse_input(make, message):
    _, emb = good()
    acts = make(*sparse_good())
    with pytest.raises(ValueError, match=message):
        mono_score(acts, emb, num_latents=M)
    with pytest.raises(ValueError, match=message):
        MonoScore(M, D).update(acts, emb)


def test_sparse_input_needs_num_latents():
    _, emb = good()
    with pytest.raises(ValueError, match="sparse acts \\(values, indices\\) need num_latents"):
        mono_score(sparse_good(), emb)


def test_metric_checks_its_dimensions_and_arguments():
    acts, emb = good()
    with pytest.raises(ValueError, match=r"acts must have 7 latents \(shape \(N, 7\)\), got \(10, 6\)"):
        MonoScore(7, D).update(acts, emb)
    with pytest.raises(ValueError, match=r"emb must have 5 features \(shape \(N, 5\)\), got \(10, 4\)"):
        MonoScore(M, 5).update(acts, emb)
    with pytest.raises(ValueError, match="num_latents must be a positive int, got 0"):
        MonoScore(0, D)
    with pytest.raises(ValueError, match=r"dead must be one of \('nan', 'zero'\), got 'drop'"):
        MonoScore(M, D, dead="drop")
    with pytest.raises(ValueError, match="no sample seen"), pytest.warns(UserWarning):
        MonoScore(M, D).compute()


def with_value(tensor, row, col, value):
    tensor = tensor.clone()
    tensor[row, col] = value
    return tensor


REJECTED = {
    "inf activation": lambda a, e, v, i: (with_value(a, 0, 0, math.inf), e),
    "NaN embedding": lambda a, e, v, i: (a, with_value(e, 2, 1, math.nan)),
    "zero embedding": lambda a, e, v, i: (a, with_value(e, 2, slice(None), 0.0)),
    "mismatched N": lambda a, e, v, i: (a, e[:-1]),
    "repeated sparse index": lambda a, e, v, i: ((v, with_value(i, 1, 1, int(i[1, 0]))), e),
    "sparse index out of range": lambda a, e, v, i: ((v, with_value(i, 1, 1, M)), e),
    "negative sparse index": lambda a, e, v, i: ((v, with_value(i, 1, 1, -2)), e),
}


@pytest.mark.parametrize("method", ["update", "forward"])
@pytest.mark.parametrize("case", list(REJECTED))
def test_a_rejected_batch_leaves_the_metric_state_untouched(case, method):
    acts, emb = good()
    values, indices = sparse_good()
    metric = MonoScore(M, D)
    metric.update(acts, emb)
    metric.update((values, indices), emb)
    before = {name: getattr(metric, name).clone() for name in metric._defaults}
    rows_before = metric._rows_since_flush
    bad_acts, bad_emb = REJECTED[case](acts, emb, values, indices)
    with pytest.raises(ValueError):
        getattr(metric, method)(bad_acts, bad_emb)
    for name, value in before.items():
        assert torch.equal(getattr(metric, name), value), name
    assert metric._rows_since_flush == rows_before


@pytest.mark.parametrize("method", ["update", "forward"])
def test_a_rejected_batch_leaves_class_purity_untouched(method):
    acts, _ = good()
    labels = torch.randint(0, 3, (N,))
    metric = ClassPurity(M, 3)
    metric.update(acts, labels)
    before = (metric.counts.clone(), metric.mass.clone())
    with pytest.raises(ValueError, match="labels has class indices"):
        getattr(metric, method)(acts, labels.index_put((torch.tensor([0]),), torch.tensor(5)))
    assert torch.equal(metric.counts, before[0]) and torch.equal(metric.mass, before[1])


def test_non_tensor_embeddings_are_rejected():
    acts, emb = good()
    for call in (mono_loss, mono_score, mono_score_pairwise):
        with pytest.raises(ValueError, match="emb must be a torch.Tensor, got list"):
            call(acts, emb.tolist())


def test_loss_and_summary_arguments():
    acts, emb = good()
    with pytest.raises(ValueError, match="eps must be a finite number > 0, got 0.0"):
        mono_loss(acts, emb, eps=0.0)
    with pytest.raises(ValueError, match=r"average must be one of \('active', 'all'\), got 'mean'"):
        mono_loss(acts, emb, average="mean")
    with pytest.raises(ValueError, match=r"dead must be one of"):
        mono_score(acts, emb, dead=None)
    with pytest.raises(ValueError, match="scores must be finite or NaN"):
        summarize(torch.tensor([0.1, math.inf]))
    with pytest.raises(ValueError, match=r"scores must have shape \(M,\)"):
        summarize(torch.zeros(2, 2))


def test_purity_input_checks():
    acts, _ = good()
    labels = torch.randint(0, 3, (N,))
    with pytest.raises(
        ValueError, match=r"labels has class indices in \[-1, 2\], expected values in \[0, 2\]"
    ):
        class_purity(acts, labels.index_put((torch.tensor([0]),), torch.tensor(-1)), num_classes=3)
    with pytest.raises(
        ValueError, match=r"labels has class indices in \[0, 2\], expected values in \[0, 1\]"
    ):
        class_purity(acts, labels.index_put((torch.tensor([0]),), torch.tensor(2)), num_classes=2)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(10,\)"):
        class_purity(acts, labels[:-1], num_classes=3)
    with pytest.raises(ValueError, match="labels must hold integer class indices"):
        class_purity(acts, labels.float(), num_classes=3)
    with pytest.raises(ValueError, match="threshold must be a number >= 0"):
        class_purity(acts, labels, threshold=-0.1)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        ClassPurity(M, 0)
    values, indices = sparse_good()
    indices[3, 1] = indices[3, 0]
    with pytest.raises(
        ValueError,
        match=r"acts must list a latent at most once per row, got 1 repeated \(row, latent\) pair\(s\)",
    ):
        class_purity((values, indices), labels, num_classes=3, num_latents=M)
