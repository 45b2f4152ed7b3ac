"""dictionary_learning trainer folders and saev checkpoints against float64 re-implementations."""

import json
import os

import pytest
import torch

from harmono.sae import SAE
from naive_sae_formats import D_IN, D_SAE, K, assert_matches, inputs, topk_dense, weights

A, D = D_IN, D_SAE
"""dictionary_learning's names: activation_dim, dict_size."""


def linear_tensors(seed=0):
    """``encoder.weight [D, A]``, ``encoder.bias``, ``decoder.weight [A, D]`` (nn.Linear layout), float32."""
    return {
        "encoder.weight": weights(D, A, seed=seed, scale=A**-0.5).float(),
        "encoder.bias": weights(D, seed=seed + 1, scale=0.1).float(),
        "decoder.weight": weights(A, D, seed=seed + 2, scale=D**-0.5).float(),
    }


def dl_state(dict_class, threshold=0.05):
    """A state dict of ``dict_class`` as dictionary_learning saves it in ``ae.pt``."""
    b_dec = weights(A, seed=7, scale=0.3).float()
    if dict_class == "AutoEncoder":
        return {**linear_tensors(), "bias": b_dec}
    if dict_class == "AutoEncoderNew":
        return {**linear_tensors(), "decoder.bias": b_dec}
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        scalars = {"k": torch.tensor(K, dtype=torch.int32), "threshold": torch.tensor(threshold)}
        return {**linear_tensors(), "b_dec": b_dec, **scalars}
    linear = linear_tensors()
    own = {"W_enc": linear["encoder.weight"].T.contiguous(), "b_enc": linear["encoder.bias"],
           "W_dec": linear["decoder.weight"].T.contiguous(), "b_dec": b_dec}  # fmt: skip
    if dict_class == "JumpReluAutoEncoder":
        return {**own, "threshold": weights(D, seed=8).abs().float() * 0.2}
    if dict_class == "MatryoshkaBatchTopKSAE":
        scalars = {"k": torch.tensor(K, dtype=torch.int32), "threshold": torch.tensor(threshold),
                   "group_sizes": torch.tensor([16, 32])}  # fmt: skip
        return {**own, **scalars}
    gated = linear_tensors()
    del gated["encoder.bias"]
    extra = {
        name: weights(D, seed=9 + i, scale=0.1).float()
        for i, name in enumerate(("gate_bias", "mag_bias", "r_mag"))
    }
    return {**gated, **extra, "decoder_bias": b_dec}


def write_trainer(path, dict_class, state):
    """A trainer folder: ``config.json`` (``trainer.dict_class``) and ``ae.pt``."""
    path.mkdir(parents=True)
    trainer = {"dict_class": dict_class, "trainer_class": "T", "activation_dim": A, "dict_size": D, "k": K,
               "lm_name": "tiny", "layer": 3, "submodule_name": "resid_post_layer_3"}  # fmt: skip
    (path / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": A}}))
    torch.save(state, path / "ae.pt")
    return path


def dl_forward(dict_class, state, x):
    """dictionary_learning's encode and decode in float64."""
    t = {name: value.double() for name, value in state.items()}
    if "encoder.weight" in t:
        enc_w, dec_w = t["encoder.weight"], t["decoder.weight"]
    else:
        enc_w, dec_w = t["W_enc"].T, t["W_dec"].T
    if dict_class == "AutoEncoder":
        norms = dec_w.norm(dim=0)  # from_pretrained(normalize_decoder=True): unit decoder columns
        enc_w, enc_b, dec_w = enc_w * norms[:, None], t["encoder.bias"] * norms, dec_w / norms
        latents = torch.relu((x - t["bias"]) @ enc_w.T + enc_b)
        return latents, latents @ dec_w.T + t["bias"]
    if dict_class == "AutoEncoderNew":
        latents = torch.relu(x @ enc_w.T + t["encoder.bias"])
        return latents, latents @ dec_w.T + t["decoder.bias"]
    if dict_class == "GatedAutoEncoder":
        hidden = (x - t["decoder_bias"]) @ enc_w.T
        latents = (hidden + t["gate_bias"] > 0) * torch.relu(t["r_mag"].exp() * hidden + t["mag_bias"])
        return latents, latents @ dec_w.T + t["decoder_bias"]
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ t["W_enc"] + t["b_enc"]
        latents = torch.relu(pre * (pre > t["threshold"]))
        return latents, latents @ t["W_dec"] + t["b_dec"]
    enc_b = t.get("encoder.bias", t.get("b_enc"))
    post = torch.relu((x - t["b_dec"]) @ enc_w.T + enc_b)
    latents = topk_dense(post, K) if dict_class == "AutoEncoderTopK" else post * (post > t["threshold"])
    return latents, latents @ dec_w.T + t["b_dec"]


CLASSES = ["AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE",
           "JumpReluAutoEncoder", "GatedAutoEncoder"]  # fmt: skip


@pytest.mark.parametrize("dict_class", CLASSES)
def test_dictionary_learning_forward(tmp_path, dict_class):
    state = dl_state(dict_class)
    folder = write_trainer(tmp_path / "trainer_0", dict_class, state)
    x = inputs()
    for path in (folder, folder / "ae.pt"):
        sae = SAE.from_pretrained(path)
        assert (sae.config.format, sae.config.architecture) == ("dictionary_learning", dict_class)
        assert_matches(sae, x, *dl_forward(dict_class, state, x))


def test_biases_saved_scaled_by_the_norm_factor_take_raw_activations(tmp_path):
    """Trained on x / c, saved with biases and threshold times c: raw x gives c times the trained outputs."""
    c = 7.5
    trained = dl_state("BatchTopKSAE", threshold=0.05)
    saved = {**trained, "encoder.bias": trained["encoder.bias"] * c, "b_dec": trained["b_dec"] * c,
             "threshold": trained["threshold"] * c}  # fmt: skip
    sae = SAE.from_pretrained(write_trainer(tmp_path / "t", "BatchTopKSAE", saved))
    x = inputs()
    latents, recon = dl_forward("BatchTopKSAE", trained, x / c)
    assert_matches(sae, x, latents * c, recon * c)


def test_batchtopk_threshold_never_estimated_is_plain_relu(tmp_path):
    state = dl_state("BatchTopKSAE", threshold=-1.0)
    sae = SAE.from_pretrained(write_trainer(tmp_path / "t", "BatchTopKSAE", state))
    x = inputs()
    latents, recon = dl_forward("BatchTopKSAE", state, x)
    assert torch.equal(latents, torch.relu(latents))
    assert_matches(sae, x, latents, recon)


def test_malformed_dictionary_learning_folders_name_the_file(tmp_path):
    state = dl_state("AutoEncoderTopK")
    del state["b_dec"]
    folder = write_trainer(tmp_path / "a", "AutoEncoderTopK", state)
    with pytest.raises(
        ValueError, match=r"a/ae.pt: expected the tensors of a AutoEncoderTopK .*missing \['b_dec'\]"
    ):
        SAE.from_pretrained(folder)
    folder = write_trainer(tmp_path / "b", "CrossCoder", dl_state("AutoEncoder"))
    with pytest.raises(ValueError, match=r"b/config.json: expected trainer.dict_class in .*got 'CrossCoder'"):
        SAE.from_pretrained(folder)
    folder = write_trainer(tmp_path / "c", "AutoEncoder", {"ae": dl_state("AutoEncoder"), "step": 10})
    with pytest.raises(ValueError, match="c/ae.pt: this is a training backup"):
        SAE.from_pretrained(folder)
    state = dl_state("JumpReluAutoEncoder")
    state["threshold"] = state["threshold"][:-1]
    folder = write_trainer(tmp_path / "d", "JumpReluAutoEncoder", state)
    with pytest.raises(
        ValueError, match=r"d/ae.pt: expected the tensors .*'threshold': 'expected \(48,\), got \(47,\)'"
    ):
        SAE.from_pretrained(folder)


def test_a_pickle_payload_in_ae_pt_is_refused_unrun(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    folder = write_trainer(tmp_path / "t", "AutoEncoder", {**dl_state("AutoEncoder"), "x": Payload()})
    with pytest.raises(ValueError, match="ae.pt: refused to load a dictionary_learning state dict"):
        SAE.from_pretrained(folder)
    assert not marker.exists()


def write_saev(path, header, state):
    """saev's layout: one JSON line, then ``torch.save`` of the state dict in the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(json.dumps(header).encode() + b"\n")
        torch.save(state, handle)
    return path


def saev_tensors(seed=0):
    """``W_enc [d, d_sae]``, ``b_enc``, ``W_dec [d_sae, d]``, ``b_dec``, float32."""
    return {"W_enc": weights(D_IN, D_SAE, seed=seed, scale=D_IN**-0.5).float(),
            "b_enc": weights(D_SAE, seed=seed + 1, scale=0.1).float(),
            "W_dec": weights(D_SAE, D_IN, seed=seed + 2, scale=D_SAE**-0.5).float(),
            "b_dec": weights(D_IN, seed=seed + 3, scale=0.3).float()}  # fmt: skip


def schema_5(cls, **params):
    cfg = {
        "d_model": D_IN,
        "d_sae": D_SAE,
        "activation": {"cls": cls, "params": params},
        "normalize_w_dec": True,
    }
    return {"schema": 5, "cfg": cfg, "commit": "abc", "lib": "0.1"}


def saev_forward(tensors, x, cls, threshold=None, subtract=False):
    """saev's encode (eval mode) and decode in float64."""
    t = {name: value.double() for name, value in tensors.items()}
    hidden = (x - t["b_dec"] if subtract else x) @ t["W_enc"] + t["b_enc"]
    if cls == "TopK":
        latents = topk_dense(hidden, K)  # no ReLU: a kept value may be negative
    elif cls == "BatchTopK" and threshold > 0:
        latents = hidden * (hidden > threshold)
    else:
        latents = torch.relu(hidden)
    return latents, latents @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize(
    ("cls", "threshold"), [("Relu", None), ("TopK", None), ("BatchTopK", 0.1), ("BatchTopK", 0.0)]
)
def test_saev_forward(tmp_path, cls, threshold):
    tensors = saev_tensors()
    if cls == "TopK":
        tensors["b_enc"] -= 6.0  # some rows keep negative pre-activations among their top k
    state = {
        **tensors,
        **({"activation.threshold": torch.tensor(threshold)} if threshold is not None else {}),
    }
    path = write_saev(tmp_path / "ckpt" / "sae.pt", schema_5(cls, top_k=K), state)
    x = inputs()
    latents, recon = saev_forward(tensors, x, cls, threshold)
    if cls == "TopK":
        assert (latents < 0).any()  # the case shows that no ReLU is applied
    for where in (path, path.parent):
        sae = SAE.from_pretrained(where)
        assert (sae.config.format, sae.config.architecture) == ("saev", cls)
        assert_matches(sae, x, latents, recon)


def test_old_saev_headers_subtract_b_dec(tmp_path):
    tensors = saev_tensors()
    x = inputs()
    oldest = {"d_vit": D_IN, "exp_factor": 3, "sparsity_coeff": 4e-4, "ghost_grads": False, "seed": 0}
    sae = SAE.from_pretrained(write_saev(tmp_path / "a.pt", oldest, tensors))
    assert sae.config.d_sae == D_SAE
    assert_matches(sae, x, *saev_forward(tensors, x, "Relu", subtract=True))
    schema_1 = {
        "schema": 1,
        "cfg": {"d_vit": D_IN, "exp_factor": 3, "top_k": K, "seed": 0},
        "cls": "TopKConfig",
    }
    sae = SAE.from_pretrained(write_saev(tmp_path / "b.pt", schema_1, tensors))
    assert_matches(sae, x, *saev_forward(tensors, x, "TopK", subtract=True))
    schema_3 = {
        "schema": 3,
        "cfg": {"d_model": D_IN, "exp_factor": 3, "activation": {"cls": "Relu", "params": {}}},
    }
    sae = SAE.from_pretrained(write_saev(tmp_path / "c.pt", schema_3, tensors))
    assert_matches(sae, x, *saev_forward(tensors, x, "Relu"))


def test_malformed_saev_files_name_the_file(tmp_path):
    path = write_saev(tmp_path / "a.pt", schema_5("BatchTopK", top_k=K), saev_tensors())
    with pytest.raises(ValueError, match="a.pt: a BatchTopK SAE without activation.threshold"):
        SAE.from_pretrained(path)
    path = write_saev(tmp_path / "b.pt", schema_5("AbsBatchTopK", top_k=K), saev_tensors())
    with pytest.raises(
        ValueError, match=r"b.pt: expected a saev activation in \['Relu', 'TopK', 'BatchTopK'\]"
    ):
        SAE.from_pretrained(path)
    state = saev_tensors()
    state["W_dec"] = state["W_dec"].T.contiguous()
    path = write_saev(tmp_path / "c.pt", schema_5("Relu"), state)
    with pytest.raises(ValueError, match=r"c.pt: expected the tensors of a saev Relu SAE .*'W_dec'"):
        SAE.from_pretrained(path)
    data = path.read_bytes()
    (tmp_path / "d.pt").write_bytes(data[: data.index(b"\n") + 60])
    with pytest.raises(ValueError, match="d.pt is truncated or not a torch file"):
        SAE.from_pretrained(tmp_path / "d.pt")
