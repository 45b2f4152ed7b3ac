"""SAELens folders: read against a float64 SAELens forward, written and read back, and by sae-lens itself."""

import json

import pytest
import torch
from safetensors.torch import save_file

from harmono.sae import SAE, ForeignSAE, SAEConfig, create_sae
from harmono.sae.foreign import read_saelens, write_saelens
from naive_sae_formats import D_IN, D_SAE, K, assert_matches, inputs, layer_norm, topk_dense, weights


def saelens_tensors(architecture, seed=0):
    """float64 tensors in SAELens's names and orientation (W_enc [d_in, d_sae], W_dec [d_sae, d_in])."""
    tensors = {
        "W_enc": weights(D_IN, D_SAE, seed=seed, scale=D_IN**-0.5),
        "W_dec": weights(D_SAE, D_IN, seed=seed + 1, scale=D_SAE**-0.5),
        "b_dec": weights(D_IN, seed=seed + 2, scale=0.3),
        "b_enc": weights(D_SAE, seed=seed + 3, scale=0.1),
    }
    if architecture == "jumprelu":
        tensors["threshold"] = weights(D_SAE, seed=seed + 4).abs() * 0.3
    if architecture == "gated":
        del tensors["b_enc"]
        for offset, name in enumerate(("b_gate", "b_mag", "r_mag")):
            tensors[name] = weights(D_SAE, seed=seed + 5 + offset, scale=0.1)
    return tensors


def write_folder(path, tensors, **config):
    """A SAELens v6 folder as SAELens's ``save_model`` lays it out."""
    path.mkdir(parents=True, exist_ok=True)
    metadata = {"sae_lens_version": "6.54.12", "hook_name": "blocks.3.hook_resid_post"}
    record = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
              "normalize_activations": "none", "reshape_activations": "none", "metadata": metadata,
              **config}  # fmt: skip
    (path / "cfg.json").write_text(json.dumps(record))
    save_file(
        {name: t.float().contiguous() for name, t in tensors.items()}, str(path / "sae_weights.safetensors")
    )
    return path


def saelens_forward(tensors, x, architecture, k=K, apply_b_dec=True, norm="none", rescale=False):
    """SAELens's inference forward in float64: ``(latents, reconstruction)``."""
    t = {name: value.double() for name, value in tensors.items()}
    stats = None
    if norm == "constant_norm_rescale":
        factor = D_IN**0.5 / x.norm(dim=1, keepdim=True)
        x = x * factor
    if norm == "layer_norm":
        x, mean, std = layer_norm(x)
        stats = (mean, std)
    x_in = x - t["b_dec"] if apply_b_dec else x
    if architecture == "gated":
        gate = (x_in @ t["W_enc"] + t["b_gate"]) > 0
        latents = gate * torch.relu(x_in @ (t["W_enc"] * t["r_mag"].exp()) + t["b_mag"])
        decoded = latents
    else:
        hidden = x_in @ t["W_enc"] + t["b_enc"]
        norms = t["W_dec"].norm(dim=1)
        if architecture == "standard":
            latents = torch.relu(hidden)
        elif architecture == "jumprelu":
            latents = torch.relu(hidden) * (hidden > t["threshold"])
        else:
            latents = torch.relu(topk_dense(hidden * norms if rescale else hidden, k))
        decoded = latents / norms if rescale else latents
    out = decoded @ t["W_dec"] + t["b_dec"]
    if norm == "constant_norm_rescale":
        out = out / factor
    if stats is not None:
        out = out * stats[1] + stats[0]
    return latents, out


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu", "gated"])
@pytest.mark.parametrize("norm", ["none", "constant_norm_rescale", "layer_norm", "expected_average_only_in"])
def test_each_architecture_and_input_norm_runs_the_saelens_forward(tmp_path, architecture, norm):
    tensors = saelens_tensors(architecture)
    extra = {"k": K, "rescale_acts_by_decoder_norm": False} if architecture == "topk" else {}
    folder = write_folder(tmp_path, tensors, architecture=architecture, normalize_activations=norm, **extra)
    sae = SAE.from_pretrained(folder)
    assert isinstance(sae, ForeignSAE) and not sae.training
    assert (sae.config.format, sae.config.architecture) == ("saelens", architecture)
    x = inputs()
    run_norm = "none" if norm == "expected_average_only_in" else norm  # folded into the weights on save
    assert_matches(sae, x, *saelens_forward(tensors, x, architecture, norm=run_norm))


def test_apply_b_dec_to_input_false_and_a_pre_6_topk_config(tmp_path):
    tensors = saelens_tensors("standard")
    sae = SAE.from_pretrained(
        write_folder(tmp_path / "a", tensors, architecture="standard", apply_b_dec_to_input=False)
    )
    x = inputs()
    assert_matches(sae, x, *saelens_forward(tensors, x, "standard", apply_b_dec=False))
    # pre-6.0: no version, hook_point, activation_fn_str and its kwargs, a boolean normalize_activations
    old = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "torch.float32", "hook_point": "blocks.0.hook_resid_pre",
           "activation_fn_str": "topk", "activation_fn_kwargs": {"k": K},
           "normalize_activations": False}  # fmt: skip
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(old))
    save_file({n: t.float() for n, t in tensors.items()}, str(folder / "sae_weights.safetensors"))
    sae = SAE.from_pretrained(folder)
    assert (sae.config.architecture, sae.config.k) == ("topk", K)
    assert_matches(sae, x, *saelens_forward(tensors, x, "topk"))


def test_topk_with_decoder_norms_not_folded_rescales_as_saelens_does(tmp_path):
    """A checkpoint with rescale_acts_by_decoder_norm and atoms not of unit norm: top-k on h·‖W_dec‖."""
    tensors = saelens_tensors("topk")
    tensors["W_dec"] = tensors["W_dec"] * weights(D_SAE, 1, seed=11).abs().add(0.2)
    folder = write_folder(tmp_path, tensors, architecture="topk", k=K, rescale_acts_by_decoder_norm=True)
    x = inputs()
    reference = saelens_forward(tensors, x, "topk", rescale=True)
    assert not torch.equal(
        reference[0], saelens_forward(tensors, x, "topk")[0]
    )  # the rescale changes the choice
    assert_matches(SAE.from_pretrained(folder), x, *reference)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, c: t.pop("threshold"), r"missing \['threshold'\]"),
        (
            lambda t, c: t.update(W_dec=t["W_dec"].T.contiguous()),
            r"W_dec.: .expected \(48, 16\), got \(16, 48\)",
        ),
        (lambda t, c: c.update(architecture="transcoder"), "expected a SAELens SAE of the architectures"),
        (lambda t, c: c.update(normalize_activations="whiten"), "expected normalize_activations in"),
        (lambda t, c: c.update(d_sae="48"), "expected 'd_sae' to be an integer, got '48'"),
    ],
)
def test_a_malformed_folder_names_the_file(tmp_path, change, message):
    tensors, config = saelens_tensors("jumprelu"), {"architecture": "jumprelu"}
    change(tensors, config)
    folder = write_folder(tmp_path, tensors, **config)
    with pytest.raises(ValueError, match=message) as err:
        SAE.from_pretrained(folder)
    assert str(folder) in str(err.value)


def test_a_truncated_weights_file_is_named(tmp_path):
    folder = write_folder(tmp_path, saelens_tensors("standard"), architecture="standard")
    weights_file = folder / "sae_weights.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-100])
    with pytest.raises(ValueError, match="sae_weights.safetensors is truncated or not a safetensors file"):
        SAE.from_pretrained(folder)


def trained_like(architecture, seed=0):
    """A harmono SAE with random (not initial) weights; BatchTopK with an inference threshold."""
    torch.manual_seed(seed)
    sae = create_sae(SAEConfig(architecture, d_in=D_IN, d_sae=D_SAE, k=K))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
        if architecture == "jumprelu":
            sae.threshold.abs_()
        if architecture == "batchtopk":
            sae.threshold.fill_(0.2)
    return sae.eval()


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "jumprelu", "relu"])
@pytest.mark.parametrize("l2_normalized", [False, True])
def test_export_round_trip_gives_the_same_outputs(tmp_path, architecture, l2_normalized):
    sae = trained_like(architecture)
    folder = write_saelens(sae, tmp_path, {"model_name": "tiny-cnn", "hook_name": "pooled"}, l2_normalized)
    record = json.loads((folder / "cfg.json").read_text())
    saved = {"topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "relu": "standard"}[
        architecture
    ]
    assert record["architecture"] == saved and record["metadata"]["hook_name"] == "pooled"
    back = read_saelens(folder)
    x = inputs()
    x32 = x.float()
    unit = torch.nn.functional.normalize(x32, dim=1) if l2_normalized else x32
    latents, recon = back.reconstruct(x32)
    assert torch.allclose(latents, sae.encode(unit), atol=1e-5)
    scale = x32.norm(dim=1, keepdim=True) if l2_normalized else 1.0
    assert torch.allclose(recon, sae.decode(sae.encode(unit)) * scale, atol=1e-4)
    assert (latents != 0).any()
    with pytest.raises(FileExistsError, match="holds a SAELens SAE already"):
        write_saelens(sae, tmp_path)


def test_a_batchtopk_without_a_threshold_is_not_exported(tmp_path):
    sae = create_sae(SAEConfig("batchtopk", d_in=D_IN, d_sae=D_SAE, k=K))
    with pytest.raises(ValueError, match="no inference threshold yet"):
        write_saelens(sae, tmp_path)
    assert not (tmp_path / "cfg.json").exists()


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "jumprelu", "relu"])
def test_sae_lens_itself_loads_the_export_and_reconstructs_the_same(tmp_path, architecture):
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()  # sae-lens imports transformers' BERT, which imports torchvision
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (pip install harmono[saelens])"
    )
    sae = trained_like(architecture)
    folder = write_saelens(sae, tmp_path / "saelens", {"model_name": "tiny-cnn"}, l2_normalized=True)
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    x = inputs().float()
    with torch.no_grad():
        their_latents = theirs.encode(x)
        their_recon = theirs.decode(their_latents)
        ours_latents, ours_recon = read_saelens(folder).reconstruct(x)
    assert torch.allclose(their_latents, ours_latents, atol=1e-5)
    assert torch.allclose(their_recon, ours_recon, atol=1e-4)
    assert (ours_latents != 0).any()
