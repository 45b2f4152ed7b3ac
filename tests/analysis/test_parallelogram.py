import itertools
import math

import numpy as np
import pytest
import torch

from harmono.analysis.parallelogram import (
    analogy_quadruples,
    parallelogram_loss,
    plot_cdfs,
    principal_projection,
    random_quadruple_loss,
    summarize,
)


def reference_loss(emb, pairs, quadruples, num_pcs):
    """Float64 numpy parallelogram loss: PCA by SVD of the centred matrix, then a plain loop."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0)
    if num_pcs is not None:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:num_pcs].T
    sigma = math.sqrt(np.mean(np.sum(x**2, axis=1)))
    out = []
    for i, j in np.asarray(quadruples):
        a, b = np.asarray(pairs)[i]
        c, d = np.asarray(pairs)[j]
        out.append(np.linalg.norm(x[a] + x[d] - x[b] - x[c]) / sigma)
    return np.array(out)


def random_case(seed=0, vocab=40, dim=8, num_pairs=6):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab, dim, generator=gen) * torch.linspace(3.0, 0.5, dim) + 2.0
    pairs = torch.randperm(vocab, generator=gen)[: 2 * num_pairs].reshape(num_pairs, 2)
    quadruples = analogy_quadruples(num_pairs)
    return emb, pairs, quadruples


# ---------------------------------------------------------------- principal projection


def test_projection_matches_numpy_pca_up_to_sign():
    emb, _, _ = random_case()
    proj = principal_projection(emb, 3)
    assert proj.shape == (40, 3) and proj.dtype == torch.float64
    x = emb.double().numpy()
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    expected = x @ vt[:3].T
    signs = np.sign(np.sum(proj.numpy() * expected, axis=0))
    np.testing.assert_allclose(proj.numpy() * signs, expected, rtol=1e-10, atol=1e-10)
    variances = proj.square().sum(dim=0).numpy()  # decreasing, equal to the squared singular values
    np.testing.assert_allclose(variances, s[:3] ** 2, rtol=1e-10)
    assert np.all(np.diff(variances) < 0)


def test_projection_without_pcs_is_centred_float64():
    emb, _, _ = random_case()
    proj = principal_projection(emb, None)
    assert proj.dtype == torch.float64
    torch.testing.assert_close(proj, emb.double() - emb.double().mean(dim=0), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- loss


@pytest.mark.parametrize("num_pcs", [1, 2, 5, 8, None])
def test_loss_matches_numpy_reference(num_pcs):
    emb, pairs, quadruples = random_case(seed=1)
    loss = parallelogram_loss(emb, pairs, quadruples, num_pcs=num_pcs)
    assert loss.shape == (quadruples.shape[0],) and loss.dtype == torch.float64
    expected = reference_loss(emb.numpy(), pairs.numpy(), quadruples.numpy(), num_pcs)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_exact_parallelogram_has_zero_loss():
    # tokens 0..3: E1 - E0 == E3 - E2; tokens 4, 5 only shape the PCA and sigma
    emb = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [1.0, 2.0, 0.0],
            [3.0, 1.0, 1.0],
            [4.0, 3.0, 1.0],
            [-2.0, 5.0, 7.0],
            [6.0, -1.0, 2.0],
        ],
        dtype=torch.float64,
    )
    pairs = torch.tensor([[0, 1], [2, 3]])
    quadruples = torch.tensor([[0, 1], [1, 0]])
    for num_pcs in (None, 1, 2, 3):
        loss = parallelogram_loss(emb, pairs, quadruples, num_pcs=num_pcs)
        torch.testing.assert_close(loss, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_known_value_by_hand():
    # centred rows (-1, -1.5), (1, -1.5), (-1, 0.5), (1, 2.5): mean squared norm 15 / 4
    # E0 + E3 - E1 - E2 = (0, 2): loss = 2 / sqrt(3.75)
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 4.0]])
    pairs = torch.tensor([[0, 1], [2, 3]])
    quadruples = torch.tensor([[0, 1], [1, 0], [0, 0]])
    expected = torch.tensor([2 / math.sqrt(3.75), 2 / math.sqrt(3.75), 0.0], dtype=torch.float64)
    for num_pcs in (None, 2):
        loss = parallelogram_loss(emb, pairs, quadruples, num_pcs=num_pcs)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_pcs", [2, 5, None])
def test_invariant_to_rotation_scale_translation(num_pcs):
    emb, pairs, quadruples = random_case(seed=2)
    emb = emb.double()
    gen = torch.Generator().manual_seed(7)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    shift = torch.randn(8, generator=gen, dtype=torch.float64) * 10
    moved = 3.7 * emb @ rotation + shift
    torch.testing.assert_close(
        parallelogram_loss(moved, pairs, quadruples, num_pcs),
        parallelogram_loss(emb, pairs, quadruples, num_pcs),
        rtol=1e-9,
        atol=1e-11,
    )


def test_all_pcs_equals_no_projection():
    emb, pairs, quadruples = random_case(seed=3)
    torch.testing.assert_close(
        parallelogram_loss(emb, pairs, quadruples, num_pcs=None),
        parallelogram_loss(emb, pairs, quadruples, num_pcs=emb.shape[1]),
        rtol=1e-10,
        atol=1e-12,
    )


def test_low_precision_embeddings_accepted():
    emb, pairs, quadruples = random_case(seed=4)
    loss = parallelogram_loss(emb.to(torch.bfloat16), pairs.to(torch.int32), quadruples, num_pcs=3)
    expected = reference_loss(emb.to(torch.bfloat16).double().numpy(), pairs.numpy(), quadruples.numpy(), 3)
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- quadruples


@pytest.mark.parametrize("num_pairs", [2, 4, 11])
def test_all_ordered_pairs_when_few(num_pairs):
    quadruples = analogy_quadruples(num_pairs, max_quadruples=110)
    assert quadruples.dtype == torch.int64
    expected = list(itertools.permutations(range(num_pairs), 2))
    assert [tuple(row) for row in quadruples.tolist()] == expected


def test_sample_without_replacement_and_reproducible():
    quadruples = analogy_quadruples(30, max_quadruples=100, seed=3)
    assert quadruples.shape == (100, 2) and quadruples.dtype == torch.int64
    rows = [tuple(row) for row in quadruples.tolist()]
    assert len(set(rows)) == 100
    assert all(i != j and 0 <= i < 30 and 0 <= j < 30 for i, j in rows)
    assert torch.equal(quadruples, analogy_quadruples(30, max_quadruples=100, seed=3))
    assert not torch.equal(quadruples, analogy_quadruples(30, max_quadruples=100, seed=4))
    assert len(analogy_quadruples(11, max_quadruples=109)) == 109  # one short of all 110


def test_sample_is_uniform():
    counts = torch.zeros(5, 5)
    for seed in range(2000):
        for i, j in analogy_quadruples(5, max_quadruples=10, seed=seed).tolist():
            counts[i, j] += 1
    assert torch.all(counts.diagonal() == 0)
    off_diagonal = counts[~torch.eye(5, dtype=torch.bool)]
    assert off_diagonal.sum() == 20_000
    assert torch.all((off_diagonal - 1000).abs() < 150)  # binomial std ~ 22


# ---------------------------------------------------------------- random baseline


def test_random_baseline_shape_and_determinism():
    emb, _, _ = random_case(seed=5)
    token_ids = torch.arange(5, 35)
    loss = random_quadruple_loss(emb, token_ids, num_quadruples=500, num_pcs=4, seed=1)
    assert loss.shape == (500,) and loss.dtype == torch.float64
    assert torch.all(loss > 0)
    assert torch.equal(loss, random_quadruple_loss(emb, token_ids, num_quadruples=500, num_pcs=4, seed=1))
    assert not torch.equal(loss, random_quadruple_loss(emb, token_ids, num_quadruples=500, num_pcs=4, seed=2))


def test_random_baseline_draws_distinct_tokens():
    # one-hot rows: distinct (a, b, c, d) give ||e_a + e_d - e_b - e_c|| = 2, any repeat gives another value;
    # sigma is over all 6 rows: ||e_i - 1/6||^2 = 30 / 36
    emb = torch.eye(6)
    token_ids = torch.tensor([1, 1, 2, 3, 4, 4])  # 4 distinct tokens, repeated ones count once
    loss = random_quadruple_loss(emb, token_ids, num_quadruples=300, num_pcs=None, seed=0)
    torch.testing.assert_close(loss, torch.full((300,), 2 / math.sqrt(30 / 36), dtype=torch.float64))


# ---------------------------------------------------------------- summary and figure


def test_summarize_matches_numpy():
    losses = torch.tensor([0.5, 2.0, 1.0, 4.0, 3.0, 0.25], dtype=torch.float64)
    summary = summarize(losses)
    values = losses.numpy()
    assert summary == {
        "count": 6,
        "mean": pytest.approx(values.mean()),
        "median": pytest.approx(np.median(values)),
        "q25": pytest.approx(np.percentile(values, 25)),
        "q75": pytest.approx(np.percentile(values, 75)),
    }
    assert isinstance(summary["count"], int)
    assert all(isinstance(summary[key], float) for key in ("mean", "median", "q25", "q75"))


def test_plot_cdfs_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="plot_cdfs needs matplotlib (the plots extra)")
    gen = torch.Generator().manual_seed(0)
    curves = {
        "standard": {
            "antonym": torch.rand(50, generator=gen) + 1,
            "present-past": torch.rand(40, generator=gen),
        },
        "harmonic": {"antonym": torch.rand(30, generator=gen)},  # lacks a task
    }
    path = plot_cdfs(curves, tmp_path / "figs" / "cdf.png", title="parallelograms")
    assert path == tmp_path / "figs" / "cdf.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- errors


def test_emb_errors():
    good = torch.randn(6, 3)
    with pytest.raises(ValueError, match=r"emb: expected a torch.Tensor of shape \(V, D\), got ndarray"):
        principal_projection(good.numpy(), 2)
    with pytest.raises(ValueError, match=r"emb: expected shape \(V, D\) \(2-D\), got shape \(6,\)"):
        principal_projection(torch.randn(6), 2)
    with pytest.raises(ValueError, match="emb: expected a floating-point tensor, got dtype torch.int64"):
        principal_projection(torch.ones(6, 3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match=r"V >= 2 and D >= 1, got shape \(1, 3\)"):
        principal_projection(torch.randn(1, 3), None)
    for bad_value in (float("nan"), float("inf")):
        bad = good.clone()
        bad[2, 1] = bad_value
        with pytest.raises(ValueError, match="emb: expected finite values, got 1 NaN or inf out of 18"):
            principal_projection(bad, 2)
    with pytest.raises(ValueError, match="emb: expected rows that are not all equal"):
        parallelogram_loss(torch.ones(6, 3), torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0, 1]]), None)


@pytest.mark.parametrize("num_pcs", [0, 4, -1, True, 2.0, "2"])
def test_num_pcs_errors(num_pcs):
    with pytest.raises(
        ValueError, match=r"num_pcs: expected None or an int in \[1, min\(V, D\)\] = \[1, 3\]"
    ):
        principal_projection(torch.randn(6, 3), num_pcs)
    with pytest.raises(ValueError, match="num_pcs: expected"):
        parallelogram_loss(torch.randn(6, 3), torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0, 1]]), num_pcs)


def test_pairs_and_quadruples_errors():
    emb = torch.randn(6, 3)
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    quads = torch.tensor([[0, 1], [2, 0]])
    cases = [
        (pairs.tolist(), quads, r"pairs: expected a torch.Tensor of shape \(P, 2\), got list"),
        (pairs.float(), quads, "pairs: expected an integer tensor"),
        (pairs.bool(), quads, "pairs: expected an integer tensor"),
        (pairs.reshape(-1), quads, r"pairs: expected shape \(P, 2\), got shape \(6,\)"),
        (pairs.reshape(2, 3), quads, r"pairs: expected shape \(P, 2\), got shape \(2, 3\)"),
        (torch.zeros(0, 2, dtype=torch.long), quads, "pairs: expected at least one row"),
        (torch.tensor([[0, 6]]), quads, r"pairs: expected values in \[0, 6\), got values in \[0, 6\]"),
        (torch.tensor([[-1, 2]]), quads, r"pairs: expected values in \[0, 6\), got values in \[-1, 2\]"),
        (pairs, quads.double(), "quadruples: expected an integer tensor"),
        (pairs, torch.tensor([0, 1]), r"quadruples: expected shape \(Q, 2\), got shape \(2,\)"),
        (pairs, torch.zeros(0, 2, dtype=torch.long), "quadruples: expected at least one row"),
        (pairs, torch.tensor([[0, 3]]), r"quadruples: expected values in \[0, 3\), got values in \[0, 3\]"),
    ]
    for bad_pairs, bad_quads, message in cases:
        with pytest.raises(ValueError, match=message):
            parallelogram_loss(emb, bad_pairs, bad_quads, num_pcs=2)


def test_quadruple_sampler_errors():
    with pytest.raises(ValueError, match="num_pairs: expected an int >= 2, got 1"):
        analogy_quadruples(1)
    with pytest.raises(ValueError, match=r"num_pairs: expected an int >= 2, got 2.5"):
        analogy_quadruples(2.5)
    with pytest.raises(ValueError, match="max_quadruples: expected an int >= 1, got 0"):
        analogy_quadruples(5, max_quadruples=0)
    with pytest.raises(ValueError, match="seed: expected an int >= 0, got -1"):
        analogy_quadruples(50, seed=-1)


def test_random_baseline_errors():
    emb = torch.randn(10, 8)
    with pytest.raises(ValueError, match="token_ids: expected at least 4 distinct tokens, got 3"):
        random_quadruple_loss(emb, torch.tensor([0, 1, 2, 2, 1]))
    with pytest.raises(ValueError, match=r"token_ids: expected shape \(T,\), got shape \(2, 2\)"):
        random_quadruple_loss(emb, torch.tensor([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match=r"token_ids: expected values in \[0, 10\)"):
        random_quadruple_loss(emb, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="token_ids: expected an integer tensor"):
        random_quadruple_loss(emb, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="num_quadruples: expected an int >= 1, got 0"):
        random_quadruple_loss(emb, torch.arange(6), num_quadruples=0, num_pcs=2)
    with pytest.raises(ValueError, match="num_pcs: expected"):
        random_quadruple_loss(emb, torch.arange(6), num_pcs=9)


def test_summarize_errors():
    with pytest.raises(
        ValueError, match=r"losses: expected a non-empty 1-D tensor of shape \(Q,\), got shape \(0,\)"
    ):
        summarize(torch.zeros(0))
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        summarize(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="losses: expected a floating-point tensor"):
        summarize(torch.arange(3))
    with pytest.raises(ValueError, match="losses: expected finite values"):
        summarize(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"losses: expected a torch.Tensor of shape \(Q,\), got list"):
        summarize([1.0, 2.0])


def test_plot_cdfs_errors(tmp_path):
    with pytest.raises(ValueError, match="curves: expected a non-empty mapping"):
        plot_cdfs({}, tmp_path / "x.png")
    with pytest.raises(
        ValueError, match=r"curves\['standard'\]: expected a non-empty mapping task -> losses"
    ):
        plot_cdfs({"standard": {}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"curves\['standard'\]\['antonym'\]: expected finite values"):
        plot_cdfs({"standard": {"antonym": torch.tensor([1.0, float("inf")])}}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
