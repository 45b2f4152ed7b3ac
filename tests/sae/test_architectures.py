"""The four SAE architectures against naive references, save/load round trips and input checks."""

import json
import pickle

import pytest
import torch
import torch.nn.functional as F

from harmono.sae import ARCHITECTURES, SAE, SAEConfig, create_sae, geometric_median

D_IN, D_SAE, K = 12, 40, 4


def make(architecture, **overrides):
    torch.manual_seed(0)
    sae = create_sae(SAEConfig(architecture, d_in=D_IN, d_sae=D_SAE, k=K, **overrides))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return sae


def batch(n=16, seed=1):
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("architecture", ["jumprelu", "relu"])
def test_sparse_latents_are_decoded_from_their_code_with_the_dense_gradients(architecture, monkeypatch):
    """At L0 well under d_sae / 16 the latents are decoded from their entries; nothing else changes."""
    sae = make(architecture, threshold_init=2.2, bandwidth=0.4)  # pre-activations are about N(0, 1)
    with torch.no_grad():
        sae.b_enc.fill_(-2.0 if architecture == "relu" else 0.0)
    x = batch(n=64)

    def forward_and_grads():
        sae.zero_grad()
        out = sae(x)
        sum(out.losses.values()).backward()
        return out, {name: p.grad.clone() for name, p in sae.named_parameters()}

    sparse_out, sparse_grads = forward_and_grads()
    monkeypatch.setattr("harmono.sae.base.SPARSE_DECODE_MAX_DENSITY", 0.0)
    dense_out, dense_grads = forward_and_grads()
    assert sparse_out.code is not None and dense_out.code is None
    assert 0 < len(sparse_out.code.values) <= sparse_out.latents.numel() / 16
    torch.testing.assert_close(sparse_out.reconstruction, dense_out.reconstruction)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, msg=name)
    if architecture == "jumprelu":  # zeros near θ are in the code: the reconstruction reaches θ through them
        assert float(dense_grads["threshold"].abs().max()) > 0
        assert bool((sparse_out.code.values == 0).any())


def test_topk_sparse_path_equals_a_dense_reference_with_gradients():
    sae = make("topk")
    x = batch()
    out = sae(x)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    values, indices = pre.topk(K, dim=1)
    dense = torch.zeros_like(pre).scatter(1, indices, values.relu())
    recon = dense @ sae.W_dec + sae.b_dec
    reference = ((recon - x).square().mean(1) / x.square().mean(1)).mean()
    torch.testing.assert_close(out.latents, dense)
    torch.testing.assert_close(out.reconstruction, recon)
    torch.testing.assert_close(out.losses["reconstruction"], reference)
    grads = torch.autograd.grad(out.losses["reconstruction"], [sae.W_enc, sae.W_dec, sae.b_dec])
    expected = torch.autograd.grad(reference, [sae.W_enc, sae.W_dec, sae.b_dec])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert (out.latents > 0).sum(1).le(K).all()


def test_auxk_loss_equals_its_definition():
    sae = make("topk", aux_coef=0.5, k_aux=3)
    x = batch()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    out = sae(x, dead_mask=dead)
    pre = out.pre_activations.detach()
    masked = pre.masked_fill(~dead, float("-inf"))
    values, indices = masked.topk(3, dim=1)
    aux = torch.zeros_like(pre).scatter(1, indices, values.relu()) @ sae.W_dec
    residual = (x - out.reconstruction).detach()
    expected = (aux - residual).square().sum(1).mean() / (residual - residual.mean(0)).square().sum(1).mean()
    torch.testing.assert_close(out.losses["aux"], 0.5 * expected)
    assert sae(x, dead_mask=torch.zeros(D_SAE, dtype=torch.bool)).losses["aux"] == 0
    assert "aux" not in sae(x).losses


def test_batchtopk_keeps_k_per_sample_on_average_and_learns_its_threshold():
    sae = make("batchtopk", threshold_momentum=0.25)
    x = batch(8) + 3  # mostly positive pre-activations
    sae.train()
    out = sae(x)
    kept = out.latents[out.latents > 0]
    positive = int((out.pre_activations > 0).sum())
    assert len(kept) == min(K * 8, positive)
    assert torch.isclose(sae.threshold, kept.min())
    first = float(sae.threshold)
    out2 = sae(batch(8, seed=2) + 3)
    smallest = float(out2.latents.detach()[out2.latents.detach() > 0].min())
    assert float(sae.threshold) == pytest.approx(0.75 * first + 0.25 * smallest, rel=1e-6)
    sae.eval()
    pre = sae.pre_activations(x)
    torch.testing.assert_close(sae.encode(x), torch.where(pre > sae.threshold, pre, 0.0))
    torch.testing.assert_close(sae(x).reconstruction, sae.encode(x) @ sae.W_dec + sae.b_dec)


def test_jumprelu_pseudo_derivatives_follow_the_rectangle_kernel():
    eps, theta0 = 0.5, 0.3
    sae = make("jumprelu", threshold_init=theta0, bandwidth=eps, l0_coef=1.0)
    x = batch()
    out = sae(x)
    pre = out.pre_activations.detach()
    torch.testing.assert_close(out.latents, pre * (pre > theta0))
    kernel = (((pre - theta0) / eps).abs() < 0.5).float() / eps
    (grad_theta,) = torch.autograd.grad(out.latents.sum(), sae.threshold, retain_graph=True)
    torch.testing.assert_close(grad_theta, -(theta0 * kernel).sum(0))
    (grad_l0,) = torch.autograd.grad(out.losses["l0"], sae.threshold)
    torch.testing.assert_close(grad_l0, -kernel.sum(0) / len(x))
    assert out.losses["l0"].item() == pytest.approx(float((pre > theta0).sum(1).float().mean()))


def test_jumprelu_straight_through_gradient_to_the_input_is_optional():
    x = batch()
    for ste, expect_grad in ((False, False), (True, True)):
        sae = make("jumprelu", threshold_init=0.3, bandwidth=0.5, ste_to_input=ste)
        pre = sae.pre_activations(x)
        step_grad = torch.autograd.grad(sae.extra_losses(x, pre, None, None, None)["l0"], sae.W_enc,
                                        allow_unused=True)[0]  # fmt: skip
        assert (step_grad is not None and step_grad.abs().sum() > 0) == expect_grad


def test_relu_l1_is_weighted_by_decoder_norms():
    sae = make("relu", l1_coef=0.1)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, D_SAE)[:, None])
    out = sae(batch())
    norms = sae.W_dec.norm(dim=1)
    torch.testing.assert_close(out.losses["l1"], 0.1 * (out.latents * norms).sum(1).mean())
    torch.testing.assert_close(out.losses["reconstruction"], (out.reconstruction - batch()).square().mean())


def test_decoder_constraint():
    sae = make("topk")
    sae(batch()).losses["reconstruction"].backward()
    sae.remove_parallel_gradient()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(D_SAE), atol=1e-6, rtol=0)
    with torch.no_grad():
        sae.W_dec.mul_(3)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))


def test_geometric_median_minimises_the_sum_of_distances():
    points = torch.randn(200, 5, generator=torch.Generator().manual_seed(3)) ** 3
    median = geometric_median(points)

    def cost(p):
        return (points.double() - p).norm(dim=1).sum()

    for shift in torch.eye(5, dtype=torch.float64) * 1e-3:
        assert cost(median) <= cost(median + shift) and cost(median) <= cost(median - shift)
    assert cost(median) < cost(points.double().mean(0))


def test_initialisation_ties_encoder_to_decoder_and_sets_b_dec():
    sae = make("relu")
    x = batch(64) + 5
    sae.initialize_from_data(x, "mean")
    torch.testing.assert_close(sae.b_dec, x.mean(0))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    sae.initialize_from_data(x, "geometric_median")
    torch.testing.assert_close(sae.b_dec.double(), geometric_median(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("scale", [1.0, 2.0])  # a power of two folds into the weights exactly
def test_save_load_round_trip_without_pickle(tmp_path, monkeypatch, architecture, scale):
    sae = make(architecture, input_scale=scale)
    x = batch()
    if architecture == "batchtopk":
        sae.train()
        sae(x)
    sae.eval()
    sae.save_pretrained(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("loading unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = SAE.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(sae) and loaded.config.input_scale == 1.0
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == architecture
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x).reconstruction, sae(x).reconstruction)


def test_bad_input_and_incompatible_checkpoints(tmp_path):
    sae = make("topk")
    with pytest.raises(ValueError, match=r"x must have shape \(B, d_in\) = \(B, 12\), got \(4, 7\)"):
        sae(torch.zeros(4, 7))
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        sae(torch.zeros(4, D_IN, dtype=torch.long))
    with pytest.raises(ValueError, match="x must not be empty"):
        sae(torch.zeros(0, D_IN))
    with pytest.raises(ValueError, match="architecture must be one of"):
        SAEConfig("gated", d_in=4)
    with pytest.raises(ValueError, match="k must be <= d_sae = 8"):
        SAEConfig("topk", d_in=4, d_sae=8, k=9)
    expected = r"nothing: expected a saved SAE, harmono.s \(config.json \+ model.safetensors\) or another"
    with pytest.raises(FileNotFoundError, match=expected + r".*\(saelens: .*got nothing at that path"):
        SAE.from_pretrained(tmp_path / "nothing")
    sae.save_pretrained(tmp_path / "a")
    record = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**record, "d_sae": 41}))
    with pytest.raises(ValueError, match="does not fit its config"):
        SAE.from_pretrained(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({**record, "architecture": "gated"}))
    with pytest.raises(ValueError, match="architecture must be one of"):
        SAE.from_pretrained(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({**record, "colour": "red"}))
    with pytest.raises(ValueError, match=r"got unknown \['colour'\]"):
        SAE.from_pretrained(tmp_path / "a")


def test_sparse_decode_matches_dense_for_batchtopk_training():
    sae = make("batchtopk")
    sae.train()
    out = sae(batch())
    torch.testing.assert_close(out.reconstruction, out.latents @ sae.W_dec + sae.b_dec)
    loss = F.mse_loss(out.reconstruction, batch())
    loss.backward()
    assert torch.isfinite(sae.W_dec.grad).all() and sae.W_enc.grad.abs().sum() > 0
