"""sparsify folders and OpenAI sparse_autoencoder files against float64 re-implementations."""

import json
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from harmono.sae import SAE
from naive_sae_formats import D_IN, D_SAE, K, assert_matches, inputs, layer_norm, topk_dense, weights


def sparsify_tensors(skip=False, seed=0):
    """float64 tensors as sparsify saves them: encoder.weight [n, d_in], W_dec [n, d_in] (rows are atoms)."""
    tensors = {
        "encoder.weight": weights(D_SAE, D_IN, seed=seed, scale=D_IN**-0.5),
        "encoder.bias": weights(D_SAE, seed=seed + 1, scale=0.1),
        "W_dec": weights(D_SAE, D_IN, seed=seed + 2, scale=D_SAE**-0.5),
        "b_dec": weights(D_IN, seed=seed + 3, scale=0.3),
    }
    if skip:
        tensors["W_skip"] = weights(D_IN, D_IN, seed=seed + 4, scale=0.1)
    return tensors


def write_sparsify(path, tensors, **config):
    """One hookpoint folder as sparsify's ``save_to_disk`` writes it."""
    path.mkdir(parents=True)
    record = {"activation": "topk", "expansion_factor": 3, "normalize_decoder": True, "num_latents": 0,
              "k": K, "multi_topk": False, "skip_connection": "W_skip" in tensors, "transcode": False,
              "d_in": D_IN, **config}  # fmt: skip
    (path / "cfg.json").write_text(json.dumps(record))
    save_file({name: t.float().contiguous() for name, t in tensors.items()}, str(path / "sae.safetensors"))
    return path


def sparsify_forward(t, x, activation="topk", transcode=False, k=K):
    """sparsify's encode and decode in float64: relu(encoder(x - b_dec)), top-k or group max, Σ acts·W_dec."""
    pre = torch.relu((x if transcode else x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    if activation == "topk":
        latents = topk_dense(pre, k)
    else:
        latents = torch.zeros_like(pre)
        size = D_SAE // k
        for row in range(len(pre)):
            for group in range(k):
                j = group * size + int(pre[row, group * size : (group + 1) * size].argmax())
                latents[row, j] = pre[row, j]
    out = latents @ t["W_dec"] + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return latents, out


@pytest.mark.parametrize(
    ("activation", "skip", "transcode"),
    [("topk", False, False), ("groupmax", False, False), ("topk", True, False), ("topk", False, True)],
)
def test_sparsify_forward(tmp_path, activation, skip, transcode):
    tensors = sparsify_tensors(skip)
    k = 6 if activation == "groupmax" else K  # groupmax: k groups of d_sae / k latents
    folder = write_sparsify(tmp_path / "layers.3", tensors, activation=activation, transcode=transcode, k=k)
    sae = SAE.from_pretrained(folder)
    assert (sae.config.format, sae.config.d_sae) == ("sparsify", D_SAE)  # num_latents 0: d_in * expansion
    x = inputs()
    assert_matches(sae, x, *sparsify_forward(tensors, x, activation, transcode, k))


def test_a_sparsify_run_folder_points_at_its_hookpoints(tmp_path):
    write_sparsify(tmp_path / "run" / "layers.3", sparsify_tensors())
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"its sub-folders \['layers.3'\] are SAEs: pass one of them"):
        SAE.from_pretrained(tmp_path / "run")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, c: t.pop("b_dec"), r"missing \['b_dec'\]"),
        (lambda t, c: t.update(extra=torch.zeros(2)), r"got also \['extra'\]"),
        (
            lambda t, c: c.update(activation="jumprelu"),
            "expected activation 'topk' or 'groupmax', got 'jumprelu'",
        ),
        (lambda t, c: c.update(signed=True), "a 'signed' sparsify SAE"),
        (lambda t, c: c.update(num_latents=40), r"W_enc.: .expected \(16, 40\), got \(16, 48\)"),
    ],
)
def test_a_malformed_sparsify_folder_names_the_file(tmp_path, change, message):
    tensors, config = sparsify_tensors(), {}
    change(tensors, config)
    folder = write_sparsify(tmp_path / "h", tensors, **config)
    with pytest.raises(ValueError, match=message) as err:
        SAE.from_pretrained(folder)
    assert str(folder) in str(err.value)


def openai_state(activation="TopK", postact="ReLU", seed=0):
    """A state dict as OpenAI's ``Autoencoder.state_dict`` gives it (nn.Linear layout, stats buffers)."""
    state = OrderedDict(
        pre_bias=weights(D_IN, seed=seed, scale=0.3).float(),
        latent_bias=weights(D_SAE, seed=seed + 1, scale=0.1).float(),
        stats_last_nonzero=torch.zeros(D_SAE, dtype=torch.int64),
        latents_activation_frequency=torch.ones(D_SAE),
        latents_mean_square=torch.zeros(D_SAE),
    )
    state["encoder.weight"] = weights(D_SAE, D_IN, seed=seed + 2, scale=D_IN**-0.5).float()
    state["decoder.weight"] = weights(D_IN, D_SAE, seed=seed + 3, scale=D_SAE**-0.5).float()
    state["activation"] = activation
    state["activation_state_dict"] = (
        OrderedDict(k=K, postact_fn=postact) if activation == "TopK" else OrderedDict()
    )
    return state


def openai_forward(state, x):
    """OpenAI's encode and decode in float64 (LayerNorm for TopK, undone on decode)."""
    t = {name: value.double() for name, value in state.items() if isinstance(value, torch.Tensor)}
    normalize = state["activation"] == "TopK"
    if normalize:
        x, mean, std = layer_norm(x)
    pre = (x - t["pre_bias"]) @ t["encoder.weight"].T + t["latent_bias"]
    if state["activation"] == "TopK":
        latents = topk_dense(pre, K)
        latents = torch.relu(latents) if state["activation_state_dict"]["postact_fn"] == "ReLU" else latents
    else:
        latents = torch.relu(pre) if state["activation"] == "ReLU" else pre
    out = latents @ t["decoder.weight"].T + t["pre_bias"]
    return latents, (out * std + mean if normalize else out)


@pytest.mark.parametrize(("activation", "postact"), [("TopK", "ReLU"), ("TopK", "Identity"), ("ReLU", None)])
def test_openai_forward(tmp_path, activation, postact):
    state = openai_state(activation, postact)
    torch.save(state, tmp_path / "6.pt")
    sae = SAE.from_pretrained(tmp_path / "6.pt")
    assert (sae.config.format, sae.config.input_norm) == (
        "openai",
        "layer_norm" if activation == "TopK" else "none",
    )
    x = inputs()
    assert_matches(sae, x, *openai_forward(state, x))


def test_a_malformed_openai_file_names_itself(tmp_path):
    state = openai_state()
    del state["latent_bias"]
    torch.save(state, tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"a.pt: expected an OpenAI sparse autoencoder with the tensors"):
        SAE.from_pretrained(tmp_path / "a.pt")
    torch.save({**openai_state(), "activation": "GELU"}, tmp_path / "b.pt")
    with pytest.raises(
        ValueError, match="b.pt: expected activation 'TopK', 'ReLU' or 'Identity', got 'GELU'"
    ):
        SAE.from_pretrained(tmp_path / "b.pt")
    (tmp_path / "c.pt").write_bytes((tmp_path / "b.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match="c.pt is truncated or not a torch file"):
        SAE.from_pretrained(tmp_path / "c.pt")
