"""The MonoLoss batch objective: value, closed-form gradient, gradcheck, finite gradients."""

import pytest
import torch

from harmono import batch_mono_scores, mono_loss, mono_score_pairwise
from naive_mono import closed_form_loss_grad, naive_mono_score

B, M, D = 40, 12, 7


def random_batch(seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    acts = torch.randn(B, M, generator=gen, dtype=torch.float64)
    acts[:, M // 2 :] = torch.relu(acts[:, M // 2 :])
    emb = torch.randn(B, D, generator=gen, dtype=torch.float64) * 4
    return acts.to(dtype), emb.to(dtype)


def test_batch_scores_equal_the_pairwise_definition_with_batch_min_max():
    acts, emb = random_batch()
    scores, active = batch_mono_scores(acts, emb, eps=1e-12)
    assert bool(active.all())
    torch.testing.assert_close(scores, naive_mono_score(acts, emb), rtol=0, atol=1e-9)
    torch.testing.assert_close(scores, mono_score_pairwise(acts, emb), rtol=0, atol=1e-9)


def test_default_eps_matches_the_official_normalisation():
    """ã = (a - min) / (max - min + 1e-8), MS = num / (den + 1e-8): the reference's batch formula."""
    acts, emb = random_batch()
    scores, _ = batch_mono_scores(acts, emb)
    torch.testing.assert_close(scores, naive_mono_score(acts, emb, eps=1e-8), rtol=1e-7, atol=1e-9)


def test_loss_is_one_minus_the_mean_over_active_or_all_latents():
    acts, emb = random_batch()
    acts[:, 0] = 0.0
    acts[:, 1] = 3.0
    scores = naive_mono_score(acts, emb)
    alive = ~torch.isnan(scores)
    loss_active = mono_loss(acts, emb, eps=1e-12)
    loss_all = mono_loss(acts, emb, eps=1e-12, average="all")
    torch.testing.assert_close(loss_active, 1 - scores[alive].mean(), rtol=0, atol=1e-9)
    torch.testing.assert_close(loss_all, 1 - scores.nan_to_num(0.0).sum() / M, rtol=0, atol=1e-9)


def test_gradient_equals_the_closed_form():
    acts, emb = random_batch(seed=1)
    acts.requires_grad_(True)
    mono_loss(acts, emb, eps=1e-30).backward()
    torch.testing.assert_close(acts.grad, closed_form_loss_grad(acts.detach(), emb), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("average", ["active", "all"])
def test_gradcheck_float64(average):
    acts, emb = random_batch(seed=2)
    acts = acts[:12, :6].clone().requires_grad_(True)
    emb = emb[:12].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, e: mono_loss(a, e, average=average), (acts, emb))


def degenerate_batch():
    acts, emb = random_batch(seed=3, dtype=torch.float32)
    acts[:, 0] = 0.0  # dead
    acts[:, 1] = 1.7  # constant
    acts[:, 2] = 0.0
    acts[5, 2] = 2.0  # single active
    acts[:, 3] = -0.4
    acts[9, 3] = 1e-9  # single active barely above the min
    return acts, emb


def test_gradients_are_finite_and_zero_on_dead_constant_and_single_active_latents():
    acts, emb = degenerate_batch()
    acts.requires_grad_(True)
    scores, active = batch_mono_scores(acts, emb)
    assert active.tolist()[:4] == [False] * 4 and bool(active[4:].all())
    loss = mono_loss(acts, emb)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(acts.grad).all()
    assert torch.equal(acts.grad[:, :4], torch.zeros(B, 4))
    assert acts.grad[:, 4:].abs().sum() > 0


def test_no_active_latent_gives_loss_one_with_a_zero_gradient():
    acts = torch.zeros(B, M, requires_grad=True)
    emb = torch.randn(B, D)
    loss = mono_loss(acts, emb)
    loss.backward()
    assert loss.item() == 1.0
    assert torch.equal(acts.grad, torch.zeros(B, M))


def test_gradients_reach_model_parameters_without_nan():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(D, M)
    x = torch.randn(B, D)
    latents = torch.relu(encoder(x) - 5.0)  # most latents dead in this batch
    latents = torch.cat([latents, torch.ones(B, 2)], dim=1)  # and two constant ones
    mono_loss(latents, x).backward()
    assert torch.isfinite(encoder.weight.grad).all() and torch.isfinite(encoder.bias.grad).all()


def test_autocast_computes_in_float32():
    acts, emb = random_batch(dtype=torch.float32)
    expected = mono_loss(acts, emb)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = mono_loss(acts, emb)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)


def test_loss_lies_in_zero_two():
    acts, emb = random_batch()
    emb_opposed = torch.cat([emb[:1], -emb[:1]]).repeat(B // 2, 1)
    pairs = torch.zeros(B, 1, dtype=torch.float64)
    pairs[:2] = 1.0
    assert mono_loss(pairs, emb_opposed, eps=1e-12).item() == pytest.approx(2.0)
    aligned = emb[:1].repeat(B, 1)
    assert mono_loss(acts, aligned, eps=1e-12).item() == pytest.approx(0.0, abs=1e-9)
