"""MonoLoss on sparse activations: the same scores and gradients as the dense batch objective."""

import pytest
import torch

from harmono import SparseEntries, batch_mono_scores, mono_loss
from harmono.sae import SAEConfig, create_sae
from naive_mono import naive_mono_score

N, M, D = 48, 30, 6


def dense_of(values, rows, columns, num_rows=N, num_latents=M):
    """The dense ``(N, M)`` matrix of entries, differentiable in ``values`` (an independent layout)."""
    return values.new_zeros(num_rows, num_latents).index_put((rows, columns), values)


def topk_entries(seed=0, k=5, signed=False, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    values, indices = torch.randn(N, M, generator=gen, dtype=dtype).topk(k, dim=1)
    values = values if signed else values.relu()
    rows = torch.arange(N).repeat_interleave(k)
    emb = torch.randn(N, D, generator=gen, dtype=dtype) * 3
    return values.reshape(-1), rows, indices.reshape(-1), emb


def ragged_entries(seed=0):
    """Rows listing 0 to 9 latents; latent 0 listed in every row (its min is a listed value)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(N, M, generator=gen) < torch.rand(N, 1, generator=gen) * 0.3
    mask[:, 0] = True
    mask[3] = False
    mask[3, 0] = True
    rows, columns = mask.nonzero(as_tuple=True)
    values = torch.rand(len(rows), generator=gen, dtype=torch.float64) + 0.1
    values[columns == 0] += 2.0
    return values, rows, columns, torch.randn(N, D, generator=gen, dtype=torch.float64)


def with_ties(values, columns):
    """Tie the two largest entries of latent 1; zero two entries of latent 2 (ties with implicit zeros)."""
    values = values.clone()
    one = (columns == 1).nonzero().flatten()
    top = values[one].topk(2).indices
    values[one[top[1]]] = values[one[top[0]]]
    two = (columns == 2).nonzero().flatten()
    values[two[:2]] = 0.0
    return values


CASES = {
    "topk": lambda: topk_entries(),
    "signed": lambda: topk_entries(seed=1, signed=True),
    "ragged": lambda: ragged_entries(),
    "ties": lambda: (lambda v, r, c, e: (with_ties(v, c), r, c, e))(*topk_entries(seed=2, k=8)),
}


def sparse_and_dense_gradients(values, rows, columns, emb, weights):
    sparse_values = values.clone().requires_grad_(True)
    scores, active = batch_mono_scores(SparseEntries(sparse_values, rows, columns, N), emb, num_latents=M)
    (scores * weights).sum().backward()
    dense_values = values.clone().requires_grad_(True)
    dense_scores, dense_active = batch_mono_scores(dense_of(dense_values, rows, columns), emb)
    (dense_scores * weights).sum().backward()
    return (scores, active, sparse_values.grad), (dense_scores, dense_active, dense_values.grad)


@pytest.mark.parametrize("case", sorted(CASES))
def test_scores_and_gradients_equal_the_dense_objective(case):
    values, rows, columns, emb = CASES[case]()
    weights = torch.randn(M, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (scores, active, grad), (dense_scores, dense_active, dense_grad) = sparse_and_dense_gradients(
        values, rows, columns, emb, weights
    )
    assert torch.equal(active, dense_active)
    assert int(active.sum()) >= M // 2
    torch.testing.assert_close(scores, dense_scores, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, dense_grad, rtol=1e-9, atol=1e-12)
    assert float(grad.abs().max()) > 1e-3


def test_scores_equal_the_naive_formula():
    values, rows, columns, emb = ragged_entries(seed=3)
    scores, active = batch_mono_scores(SparseEntries(values, rows, columns, N), emb, num_latents=M, eps=1e-12)
    naive = naive_mono_score(dense_of(values, rows, columns), emb)
    torch.testing.assert_close(scores[active], naive[active], rtol=0, atol=1e-9)
    assert torch.equal(active, ~torch.isnan(naive))


@pytest.mark.parametrize("average", ["active", "all"])
def test_gradcheck_float64(average):
    values, rows, columns, emb = ragged_entries(seed=4)
    values = values.requires_grad_(True)
    entries = lambda v: SparseEntries(v, rows, columns, N)  # noqa: E731
    assert torch.autograd.gradcheck(
        lambda v: mono_loss(entries(v), emb, num_latents=M, average=average), (values,)
    )


def test_pairs_and_entries_give_the_same_loss_and_gradient():
    gen = torch.Generator().manual_seed(6)
    values, indices = torch.randn(N, M, generator=gen, dtype=torch.float64).topk(4, dim=1)
    emb = torch.randn(N, D, generator=gen, dtype=torch.float64)
    as_pair = values.relu().detach().requires_grad_(True)
    as_entries = values.relu().detach().reshape(-1).requires_grad_(True)
    loss_pair = mono_loss((as_pair, indices), emb, num_latents=M)
    rows = torch.arange(N).repeat_interleave(4)
    loss_entries = mono_loss(SparseEntries(as_entries, rows, indices.reshape(-1), N), emb, num_latents=M)
    loss_pair.backward()
    loss_entries.backward()
    torch.testing.assert_close(loss_pair, loss_entries, rtol=0, atol=1e-14)
    torch.testing.assert_close(as_pair.grad.reshape(-1), as_entries.grad, rtol=0, atol=1e-14)


def test_a_batch_with_no_pair_gives_loss_one_and_zero_gradient():
    values = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    entries = SparseEntries(values, torch.tensor([0, 1]), torch.tensor([0, 1]), 3)
    loss = mono_loss(entries, torch.randn(3, D, dtype=torch.float64), num_latents=4)
    loss.backward()
    assert float(loss.detach()) == 1.0
    assert torch.equal(values.grad, torch.zeros(2, dtype=torch.float64))
    nothing = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    empty = SparseEntries(nothing, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 3)
    assert float(mono_loss(empty, torch.randn(3, D), num_latents=4).detach()) == 1.0


def test_a_latent_listed_in_every_row_far_from_zero_keeps_float32_accuracy():
    """Values 30 + 0.1 U in every row: no cancellation of the shift in float32."""
    gen = torch.Generator().manual_seed(7)
    mask = torch.rand(N, M, generator=gen) < 0.2
    mask[:, 0] = True
    rows, columns = mask.nonzero(as_tuple=True)
    values = torch.rand(len(rows), generator=gen, dtype=torch.float64)
    values[columns == 0] = 30 + 0.1 * values[columns == 0]
    emb = torch.randn(N, D, generator=gen, dtype=torch.float64) + 2
    weights = torch.randn(M, generator=gen, dtype=torch.float64)
    (_, _, reference), _ = sparse_and_dense_gradients(values, rows, columns, emb, weights)
    single = values.float().requires_grad_(True)
    scores, _ = batch_mono_scores(SparseEntries(single, rows, columns, N), emb.float(), num_latents=M)
    (scores * weights.float()).sum().backward()
    dense_scores, _ = batch_mono_scores(dense_of(values, rows, columns), emb)
    torch.testing.assert_close(scores.double(), dense_scores, rtol=0, atol=1e-5)
    on_latent_0 = columns == 0
    error = (single.grad.double() - reference)[on_latent_0].abs().max()
    assert float(error) <= 1e-3 * float(reference[on_latent_0].abs().max())


def test_inference_mode_gives_the_no_grad_scores():
    values, rows, columns, emb = topk_entries()
    entries = SparseEntries(values, rows, columns, N)
    with torch.no_grad():
        expected = batch_mono_scores(entries, emb, num_latents=M).scores
    with torch.inference_mode():
        scores = batch_mono_scores(entries, emb, num_latents=M).scores
    torch.testing.assert_close(scores, expected, rtol=0, atol=0)


def test_second_derivatives_are_refused_not_silently_zero():
    values, rows, columns, emb = topk_entries()
    values = values.requires_grad_(True)
    scores, _ = batch_mono_scores(SparseEntries(values, rows, columns, N), emb, num_latents=M)
    (grad,) = torch.autograd.grad(scores.square().sum(), values, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def test_autocast_computes_in_float32():
    values, rows, columns, emb = topk_entries(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, _ = batch_mono_scores(
            SparseEntries(values.bfloat16(), rows, columns, N), emb.bfloat16(), num_latents=M
        )
    assert scores.dtype == torch.float32


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "jumprelu", "relu"])
def test_sae_code_trains_like_the_dense_latents(architecture):
    """Parameter gradients of MonoLoss on ``sae.sparse_code`` equal those on the dense latents."""
    torch.manual_seed(0)
    config = SAEConfig(architecture, d_in=16, d_sae=64, k=6, threshold_init=0.05, bandwidth=0.2)
    sae = create_sae(config).train()
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    x = torch.nn.functional.normalize(torch.randn(96, 16), dim=1)

    def gradients(sparse: bool) -> dict[str, torch.Tensor]:
        sae.zero_grad()
        output = sae(x)
        acts = sae.sparse_code(output) if sparse else output.latents
        mono_loss(acts, x, num_latents=config.d_sae).backward()
        return {name: p.grad.clone() for name, p in sae.named_parameters() if p.grad is not None}

    dense, sparse = gradients(False), gradients(True)
    assert dense.keys() == sparse.keys()
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-4, atol=1e-7, msg=name)
    if architecture == "jumprelu":  # the zeros near θ matter: without them θ learns something else
        assert float(dense["threshold"].abs().max()) > 1e-4
        sae.zero_grad()
        output = sae(x)
        rows, columns = output.latents.nonzero(as_tuple=True)
        nonzeros_only = SparseEntries(output.latents[rows, columns], rows, columns, len(x))
        mono_loss(nonzeros_only, x, num_latents=config.d_sae).backward()
        assert not torch.allclose(sae.threshold.grad, dense["threshold"], rtol=1e-3, atol=1e-7)


def test_bad_sparse_input_is_refused():
    values, rows, columns, emb = topk_entries(k=3)
    entries = SparseEntries(values, rows, columns, N)
    with pytest.raises(ValueError, match="num_latents"):
        mono_loss(entries, emb)
    with pytest.raises(ValueError, match="row-major"):
        mono_loss(entries._replace(rows=rows.flip(0)), emb, num_latents=M)
    repeated = columns.clone()
    repeated[1] = repeated[0]
    with pytest.raises(ValueError, match="at most once per row"):
        mono_loss(entries._replace(columns=repeated), emb, num_latents=M)
    with pytest.raises(ValueError, match="at most once per row"):
        mono_loss((values.reshape(N, 3), repeated.reshape(N, 3)), emb, num_latents=M)
    with pytest.raises(ValueError, match=r"columns must lie in \[0, 24\], got values in \[0, 29\]"):
        mono_loss(entries, emb, num_latents=M - 5)
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 9\], got values in \[0, 47\]"):
        mono_loss(entries._replace(num_rows=10), emb[:10], num_latents=M)
    with pytest.raises(ValueError, match="NaN"):
        mono_loss(entries._replace(values=values.clone().fill_(float("nan"))), emb, num_latents=M)
    with pytest.raises(ValueError, match="shape and device of values"):
        mono_loss(entries._replace(rows=rows[:-1]), emb, num_latents=M)
    with pytest.raises(ValueError, match="integer"):
        mono_loss(entries._replace(columns=columns.double()), emb, num_latents=M)
    with pytest.raises(ValueError, match="one row per sample"):
        mono_loss(entries, emb[:-1], num_latents=M)
    with pytest.raises(ValueError, match="emb.detach"):
        mono_loss(entries, emb.clone().requires_grad_(True), num_latents=M)
    with pytest.raises(ValueError, match="num_rows"):
        mono_loss(entries._replace(num_rows=0), emb, num_latents=M)
