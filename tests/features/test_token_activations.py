"""Token activations: each hook point equals the model's own computation there; rows, ids and resuming."""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from harmono.features import FeatureStore
from harmono.features.lm_hooks import resolve_hook
from harmono.features.token_activations import (
    TOKENS_FILE,
    TokenExtractConfig,
    extract_token_activations,
    kept_positions,
)
from harmono.models.gpt import GPT, GPTConfig

VOCAB, CONTEXT, END = 50, 8, 0


def harmono_gpt():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=3, n_head=2, n_embd=16, head="harmonic")
    return GPT(config).eval()


def hf_gpt2():
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (harmono[encoders])"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=3, n_head=2)
    return transformers.GPT2LMHeadModel(config).eval()


def stream(n=70, seed=0):
    """Token ids with an end-of-text token every 20 tokens (documents)."""
    tokens = np.random.default_rng(seed).integers(1, VOCAB, n)
    tokens[19::20] = END
    return tokens.astype(np.uint16)


def harmono_reference(model, idx, block):
    """``{site: activation}`` of block ``block``, computed by hand from the model's modules."""
    x = model.wte(idx) + model.wpe(torch.arange(idx.shape[1]))
    for layer in model.blocks[:block]:
        x = layer(x)
    layer = model.blocks[block]
    attn = layer.attn(layer.ln_1(x))
    mid = x + attn
    hidden = torch.nn.functional.gelu(layer.mlp.c_fc(layer.ln_2(mid)))
    return {"attn": attn, "mlp": hidden, "resid": mid + layer.mlp.c_proj(hidden)}


def gpt2_reference(model, idx, block):
    """The same for Hugging Face GPT-2, from its hidden states and block modules."""
    x = model(idx, output_hidden_states=True).hidden_states[block]
    layer = model.transformer.h[block]
    attn = layer.attn(layer.ln_1(x))[0]
    mid = x + attn
    hidden = layer.mlp.act(layer.mlp.c_fc(layer.ln_2(mid)))
    return {"attn": attn, "mlp": hidden, "resid": mid + layer.mlp.dropout(layer.mlp.c_proj(hidden))}


@pytest.mark.parametrize("family", ["harmono", "gpt2"])
@pytest.mark.parametrize("site", ["resid", "mlp", "attn"])
def test_each_hook_point_reads_what_the_forward_computes_there(tmp_path, family, site):
    model = harmono_gpt() if family == "harmono" else hf_gpt2()
    reference = harmono_reference if family == "harmono" else gpt2_reference
    tokens = stream()
    config = TokenExtractConfig(hook=f"{site}.1", context=CONTEXT, skip_first=1, every=2, shard_rows=7,
                                device="cpu", batch_size=3)  # fmt: skip
    report = extract_token_activations(
        model, tokens, tmp_path / "store", config, {"model": family}, END, False
    )
    store = FeatureStore(tmp_path / "store")
    positions = kept_positions(config)
    assert list(positions) == [1, 3, 5, 7]
    contexts = len(tokens) // CONTEXT
    assert report.extracted == len(store) == contexts * len(positions)
    offsets = np.array([int(i) for i in store.ids])
    assert sorted(offsets) == sorted(c * CONTEXT + p for c in range(contexts) for p in positions)
    with torch.no_grad():
        idx = torch.as_tensor(tokens[: contexts * CONTEXT].astype(np.int64)).view(contexts, CONTEXT)
        expected = reference(model, idx, 1)[site].reshape(-1, store.dim).numpy()
    got = store.take(np.arange(len(store)), "float32")
    assert np.abs(got - expected[offsets]).max() < 1e-5
    assert store.labels.tolist() == tokens[offsets].tolist()
    table = load_file(str(tmp_path / "store" / TOKENS_FILE))
    assert (
        table["offset"].tolist() == offsets.tolist() and table["token"].tolist() == tokens[offsets].tolist()
    )
    assert table["position"].tolist() == (offsets % CONTEXT).tolist()
    assert table["document"].tolist() == [int((tokens[:o] == END).sum()) for o in offsets]
    assert store.metadata["hook"] == f"{site}.1" and store.metadata["model"] == family


def test_an_interrupted_extraction_resumes_to_the_same_store(tmp_path):
    model, tokens = harmono_gpt(), stream(200)
    config = TokenExtractConfig(hook="mlp.-1", context=CONTEXT, skip_first=2, shard_rows=16, batch_size=2,
                                device="cpu")  # fmt: skip
    extract_token_activations(model, tokens, tmp_path / "whole", config, progress=False)
    calls = []

    def dies_after_five(m, idx):
        calls.append(1)
        if len(calls) > 6:  # the first call measures the width
            raise KeyboardInterrupt
        return m(idx)

    with pytest.raises(KeyboardInterrupt):
        extract_token_activations(
            model, tokens, tmp_path / "cut", config, progress=False, forward=dies_after_five
        )
    partial = len(FeatureStore(tmp_path / "cut"))
    assert 0 < partial < len(FeatureStore(tmp_path / "whole"))
    report = extract_token_activations(model, tokens, tmp_path / "cut", config, progress=False)
    assert report.skipped == partial
    whole, cut = FeatureStore(tmp_path / "whole"), FeatureStore(tmp_path / "cut")
    order = {row_id: i for i, row_id in enumerate(cut.ids)}
    rows = np.array([order[row_id] for row_id in whole.ids])
    assert np.array_equal(cut.take(rows, "float32"), whole.take(np.arange(len(whole)), "float32"))
    other = TokenExtractConfig(hook="mlp.-1", context=CONTEXT, skip_first=3, device="cpu")
    with pytest.raises(ValueError, match="holds a store with metadata"):
        extract_token_activations(model, tokens, tmp_path / "cut", other, progress=False)


def test_max_tokens_and_bad_settings(tmp_path):
    model, tokens = harmono_gpt(), stream()
    config = TokenExtractConfig(hook="resid.0", context=CONTEXT, max_tokens=10, device="cpu")
    extract_token_activations(model, tokens, tmp_path / "s", config, progress=False)
    assert [int(i) for i in FeatureStore(tmp_path / "s").ids] == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    with pytest.raises(ValueError, match=r"expected a hook point SITE.L .* got 'mlp'"):
        resolve_hook(model, "mlp")
    with pytest.raises(ValueError, match=r"expected a block in \[0, 3\)"):
        resolve_hook(model, "resid.3")
    with pytest.raises(ValueError, match="expected a module at 'blocks.9'"):
        resolve_hook(model, "module:blocks.9")
    with pytest.raises(ValueError, match="has none of the layouts"):
        resolve_hook(torch.nn.Linear(2, 2), "resid.0")
    with pytest.raises(ValueError, match="skip_first must be < context = 8"):
        TokenExtractConfig(context=8, skip_first=8)
    with pytest.raises(ValueError, match="at least context = 8 tokens"):
        extract_token_activations(
            model, tokens[:5], tmp_path / "t", TokenExtractConfig(context=8), progress=False
        )


def test_extract_lm_from_the_command_line_reads_a_harmono_and_a_hugging_face_folder(tmp_path, capsys):
    from harmono.cli import main

    tokens = stream(100)
    tokens.tofile(tmp_path / "tokens.bin")
    harmono_gpt().save_pretrained(tmp_path / "gpt")
    hf_gpt2().save_pretrained(tmp_path / "hf")
    for name, model in (("gpt", harmono_gpt()), ("hf", hf_gpt2())):
        source = ["--tokens", str(tmp_path / "tokens.bin")]
        argv = ["features", "extract-lm", "--model", str(tmp_path / name), *source, "--hook", "resid.0",
                "--context", "8", "--every", "3", "--device", "cpu", "--out", str(tmp_path / f"{name}-store"),
                "--no-progress"]  # fmt: skip
        assert main(argv) == 0
        config = TokenExtractConfig(hook="resid.0", context=8, every=3, device="cpu")
        extract_token_activations(model, tokens, tmp_path / f"{name}-direct", config, progress=False)
        from_cli, direct = FeatureStore(tmp_path / f"{name}-store"), FeatureStore(tmp_path / f"{name}-direct")
        assert from_cli.ids == direct.ids
        assert (
            np.abs(from_cli.take(np.arange(len(direct))) - direct.take(np.arange(len(direct)))).max() < 1e-5
        )
    argv = ["features", "extract-lm", "--model", str(tmp_path / "gpt"), *source, "--context", "64",
            "--out", str(tmp_path / "long")]  # fmt: skip
    assert main(argv) == 2
    assert "--context 64 is longer than" in capsys.readouterr().err
