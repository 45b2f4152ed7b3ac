import pytest
import torch
from torch import nn

from harmono import harmonic_logits
from harmono.models.toy import ToyModelConfig
from harmono.models.toy_stack import DROPOUT_SITES, BatchedToyModel, batched_harmonic_logits


def _reference_layer(model: BatchedToyModel, seed: int, layer: int) -> nn.TransformerEncoderLayer:
    """PyTorch's encoder layer (post-LN, ReLU) holding one seed's weights of one layer."""
    c, p = model.config, {k: v[seed].detach() for k, v in model.params.items()}
    ref = nn.TransformerEncoderLayer(c.embed_dim, c.num_heads, c.ff_dim, dropout=0.0, batch_first=True)
    n = f"l{layer}_"
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(p[n + "qkv"].T)
        ref.self_attn.in_proj_bias.copy_(p[n + "qkv_b"])
        ref.self_attn.out_proj.weight.copy_(p[n + "proj"].T)
        ref.self_attn.out_proj.bias.copy_(p[n + "proj_b"])
        ref.linear1.weight.copy_(p[n + "ff1"].T)
        ref.linear1.bias.copy_(p[n + "ff1_b"])
        ref.linear2.weight.copy_(p[n + "ff2"].T)
        ref.linear2.bias.copy_(p[n + "ff2_b"])
        for ln in ("1", "2"):
            getattr(ref, f"norm{ln}").weight.copy_(p[n + f"ln{ln}_w"])
            getattr(ref, f"norm{ln}").bias.copy_(p[n + f"ln{ln}_b"])
    return ref.eval()


def _perturb(model: BatchedToyModel) -> None:
    """Move every parameter off its init (zero biases and unit norms would hide mistakes)."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize("head", ["standard", "harmonic"])
def test_transformer_matches_pytorch_encoder_layers(head):
    config = ToyModelConfig(arch="transformer", head=head, vocab_size=25, seq_len=3)
    model = BatchedToyModel(config, [3, 4])
    _perturb(model)
    tokens = torch.randint(0, 25, (2, 6, 3), generator=torch.Generator().manual_seed(0))
    logits = model(tokens)
    for s in range(2):
        x = model.embedding[s].detach()[tokens[s]] + model.params["position"][s].detach()
        for layer in range(config.num_layers):
            x = x + _reference_layer(model, s, layer)(x)
        last = x[:, -1]
        if head == "standard":
            expected = last @ model.embedding[s].detach().T
        else:
            expected = harmonic_logits(last, model.params["centers"][s].detach(), config.exponent, config.eps)
        torch.testing.assert_close(logits[s].detach(), expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ["standard", "harmonic"])
def test_mlp_matches_a_plain_module_per_seed(head):
    config = ToyModelConfig(arch="mlp", head=head, vocab_size=31, seq_len=2)
    model = BatchedToyModel(config, [0, 1, 2])
    _perturb(model)
    tokens = torch.randint(0, 31, (3, 8, 2), generator=torch.Generator().manual_seed(1))
    logits = model(tokens).detach()
    for s in range(3):
        p = {k: v[s].detach() for k, v in model.params.items()}
        body = nn.Sequential(nn.Linear(32, 100), nn.SiLU(), nn.Linear(100, 16))
        with torch.no_grad():
            body[0].weight.copy_(p["w1"].T)
            body[0].bias.copy_(p["b1"])
            body[2].weight.copy_(p["w2"].T)
            body[2].bias.copy_(p["b2"])
        h = body(p["embedding"][tokens[s]].reshape(8, 32))
        if head == "standard":
            expected = h @ p["embedding"].T + p["out_bias"]
        else:  # the tied embedding is the class centers
            expected = harmonic_logits(h, p["embedding"], config.exponent, config.eps)
        torch.testing.assert_close(logits[s], expected.detach(), atol=2e-5, rtol=1e-5)


def test_batched_harmonic_logits_match_harmono():
    generator = torch.Generator().manual_seed(2)
    h, centers = torch.randn(3, 5, 16, generator=generator), torch.randn(3, 7, 16, generator=generator)
    z = batched_harmonic_logits(h, centers, 2.0, 1e-4)
    for s in range(3):
        torch.testing.assert_close(z[s], harmonic_logits(h[s], centers[s], 2.0, 1e-4), atol=1e-5, rtol=1e-5)


def test_seed_alone_equals_seed_in_a_stack():
    config = ToyModelConfig(arch="transformer", head="harmonic", vocab_size=24, seq_len=2)
    stack, alone = BatchedToyModel(config, [5, 9, 11]), BatchedToyModel(config, [9])
    for name, value in stack.params.items():
        assert torch.equal(value[1], alone.params[name][0])
    assert not torch.equal(stack.embedding[0], stack.embedding[1])


def test_dropout_only_with_noise():
    config = ToyModelConfig(arch="transformer", head="standard", vocab_size=24, seq_len=2, dropout=0.5)
    model = BatchedToyModel(config, [0])
    tokens = torch.randint(0, 24, (1, 4, 2))
    masks = model.dropout_masks([torch.Generator().manual_seed(0)], steps=1, batch_size=4)
    assert len(masks) == 4 * config.num_layers and all(m.is_contiguous() for m in masks)
    assert sum(m.shape[-1] for m in masks) == config.mask_width
    assert all(m.shape[:3] == (1, 1, 4) for m in masks)
    values = torch.cat([m.flatten() for m in masks])
    assert set(values.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - 0.5)
    assert 0.4 < (values == 0).double().mean() < 0.6
    assert torch.equal(model(tokens), model(tokens))
    assert not torch.allclose(model(tokens, [m[:, 0] for m in masks]), model(tokens))
    ones = [torch.ones_like(m[:, 0]) for m in masks]
    torch.testing.assert_close(model(tokens, ones), model(tokens))  # keeping everything changes nothing
    mlp = BatchedToyModel(ToyModelConfig(), [0])
    assert mlp.dropout_masks([torch.Generator()], 1, 4) is None


class _FixedMask(nn.Module):
    """Stands in for one of PyTorch's dropout modules: multiplies by a given scaled keep mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.view(x.shape)


@pytest.mark.parametrize(
    ("site", "module"),
    [
        ("attention output", "dropout1"),
        ("feed-forward hidden", "dropout"),
        ("feed-forward output", "dropout2"),
    ],
)
def test_each_named_dropout_site_drops_where_pytorchs_encoder_layer_does(site, module):
    config = ToyModelConfig(arch="transformer", head="standard", vocab_size=25, seq_len=3, dropout=0.5)
    model = BatchedToyModel(config, [3])
    _perturb(model)
    tokens = torch.randint(0, 25, (1, 5, 3), generator=torch.Generator().manual_seed(0))
    step = [m[:, 0] for m in model.dropout_masks([torch.Generator().manual_seed(1)], 1, 5)]
    index = DROPOUT_SITES.index(site)
    only_there = [m if k % 4 == index else torch.ones_like(m) for k, m in enumerate(step)]
    x = model.embedding[0].detach()[tokens[0]] + model.params["position"][0].detach()
    for layer in range(config.num_layers):
        reference = _reference_layer(model, 0, layer)
        setattr(reference, module, _FixedMask(step[4 * layer + index][0]))
        x = x + reference(x)
    expected = x[:, -1] @ model.embedding[0].detach().T
    torch.testing.assert_close(model(tokens, only_there)[0].detach(), expected, atol=2e-5, rtol=1e-5)
    t = config.seq_len
    widths = [config.num_heads * t * t, t * config.embed_dim, t * config.ff_dim, t * config.embed_dim]
    assert [m.shape[-1] for m in step[:4]] == widths  # the attention weights: one per head, query and key


def test_bad_config_and_input():
    with pytest.raises(ValueError, match=r"arch must be one of \('mlp', 'transformer'\), got 'cnn'"):
        ToyModelConfig(arch="cnn")
    with pytest.raises(ValueError, match="head must be one of"):
        ToyModelConfig(head="cosine")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        ToyModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="embed_dim 15 must be a multiple of num_heads 2"):
        ToyModelConfig(embed_dim=15)
    with pytest.raises(ValueError, match="exponent must be"):
        ToyModelConfig(exponent=0.0)
    with pytest.raises(ValueError, match="seeds must list at least one seed"):
        BatchedToyModel(ToyModelConfig(), [])
    model = BatchedToyModel(ToyModelConfig(vocab_size=31, seq_len=2), [0, 1])
    with pytest.raises(ValueError, match=r"tokens must have shape \(S=2, B, T=2\), got \(1, 4, 2\)"):
        model(torch.zeros(1, 4, 2, dtype=torch.long))


def test_the_first_models_of_a_stack_run_alone_as_in_the_stack():
    configs = [
        ToyModelConfig(arch="transformer", head=h, vocab_size=24, seq_len=2) for h in ("harmonic", "standard")
    ]
    model = BatchedToyModel([configs[0], configs[1], configs[0]], [1, 2, 3])
    tokens = torch.randint(0, 24, (3, 5, 2), generator=torch.Generator().manual_seed(4))
    full = model(tokens)
    torch.testing.assert_close(model(tokens[:2], params=model.leading_params(2)), full[:2])
    with pytest.raises(ValueError, match=r"tokens must have shape \(S=2, B, T=2\), got \(3, 5, 2\)"):
        model(tokens, params=model.leading_params(2))
    with pytest.raises(ValueError, match=r"count must be in \[1, 3\], got 4"):
        model.leading_params(4)
