import math

import pytest
import torch
import torch.nn.functional as F

import harmono.harmonic.functional
from harmono.models.gpt import GPT, GPTConfig
from naive_harmonic import naive_distances, naive_harmonic_loss

TINY = dict(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=16)


def tiny(head: str, **overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(head=head, **{**TINY, **overrides}))


def batch(seed: int = 1, rows: int = 3, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(TINY["vocab_size"], (rows, length + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("head", ["standard", "harmonic"])
def test_forward_and_backward_reach_every_parameter(head):
    model = tiny(head)
    x, y = batch()
    loss = model(x, y)
    assert loss.shape == () and torch.isfinite(loss)
    assert abs(float(loss.detach()) - math.log(TINY["vocab_size"])) < 1.0  # near uniform at initialisation
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert model(x).shape == (3, TINY["vocab_size"])


def test_standard_head_is_cross_entropy_of_the_tied_embedding():
    model = tiny("standard").double()
    x, y = batch()
    hidden = model.hidden(x)
    expected = F.cross_entropy((hidden @ model.wte.weight.T).flatten(0, 1), y.flatten())
    torch.testing.assert_close(model(x, y), expected)


def test_harmonic_head_loss_and_gradients_equal_the_unchunked_formula(monkeypatch):
    # 5 rows a chunk
    monkeypatch.setattr(harmono.harmonic.functional, "AUTO_CHUNK_BYTES", 5 * TINY["vocab_size"] * 8)
    model = tiny("harmonic").double()
    x, y = batch(rows=4)
    loss = model(x, y)
    (grad,) = torch.autograd.grad(loss, model.wte.weight)

    reference = tiny("harmonic").double()
    hidden = reference.hidden(x)
    n = math.sqrt(TINY["n_embd"])
    expected = naive_harmonic_loss(hidden, reference.wte.weight, y, n, eps=model.config.harmonic_eps)
    (expected_grad,) = torch.autograd.grad(expected, reference.wte.weight)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-12)


def test_harmonic_logits_are_harmax_of_the_distances_to_the_embeddings():
    model = tiny("harmonic", harmonic_exponent=3.0).double()
    x, _ = batch()
    logits = model(x)
    hidden = model.hidden(x)[:, -1]
    d = naive_distances(hidden, model.wte.weight, "euclidean", model.config.harmonic_eps)
    torch.testing.assert_close(torch.softmax(logits, -1), d.pow(-3.0) / d.pow(-3.0).sum(-1, keepdim=True))


def test_default_exponent_is_sqrt_of_the_width():
    assert GPTConfig(n_embd=256, n_head=4).exponent == 16.0
    assert GPTConfig(n_embd=256, n_head=4, harmonic_exponent=2.5).exponent == 2.5


def test_bf16_autocast_keeps_the_harmonic_loss_in_float32():
    model = tiny("harmonic")
    x, y = batch()
    full = model(x, y).detach()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x, y)
    assert mixed.dtype == torch.float32
    assert abs(float(mixed) - float(full)) < 0.05


def test_embeddings_are_tied_and_saved_once(tmp_path):
    model = tiny("harmonic")
    assert "lm_head.weight" not in model.state_dict()
    x, _ = batch()
    before = model(x)
    with torch.no_grad():
        model.wte.weight[5] += 1.0
    assert not torch.equal(before, model(x))
    model.save_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(x), model(x))


def test_generate_greedy_equals_argmax_loop_and_top1_sampling():
    model = tiny("harmonic").eval()
    prompt, _ = batch(rows=2, length=4)
    greedy = model.generate(prompt, 6, temperature=0)
    expected = prompt
    for _ in range(6):
        expected = torch.cat([expected, model(expected).argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(greedy, expected)
    top1 = model.generate(prompt, 6, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, greedy)
    sampled = [model.generate(prompt, 20, generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(sampled[0], sampled[1]) and not torch.equal(sampled[0], sampled[2])
    long = model.generate(prompt, TINY["block_size"] + 4, temperature=0)  # the context is cropped
    assert long.shape == (2, 4 + TINY["block_size"] + 4)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head, got 10 and 3"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="head must be one of"):
        GPTConfig(head="cosine")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        GPTConfig(dropout=1.0)
    with pytest.raises(ValueError, match="harmonic_exponent must be a finite number >= 0"):
        GPTConfig(harmonic_exponent=-1.0)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 0"):
        GPTConfig(vocab_size=-3)
    with pytest.raises(ValueError, match="expected a GPTConfig with vocab_size >= 1, got 0"):
        GPT(GPTConfig())
    model = tiny("standard")
    x, y = batch()
    with pytest.raises(ValueError, match=r"expected token ids of shape \(B, T\) and an integer dtype"):
        model(x.float(), y)
    with pytest.raises(ValueError, match="expected 1 to block_size = 16 tokens, got 20"):
        model(torch.zeros(1, 20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected targets of shape \(3, 12\), got \(3, 11\)"):
        model(x, y[:, 1:])
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        model.generate(x, 1, top_k=0)


def test_loading_a_directory_without_a_gpt_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a saved GPT: config.json is missing"):
        GPT.from_pretrained(tmp_path)
    tiny("standard").save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"sae": {}}')
    with pytest.raises(ValueError, match="holds no GPT"):
        GPT.from_pretrained(tmp_path)
