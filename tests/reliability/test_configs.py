"""A ``config.json`` with a field of the wrong type, or edited to another architecture, fails to load."""

import json
import re

import pytest
from safetensors.torch import load_file, save_file

from harmono.models.gpt import GPT, GPTConfig
from harmono.sae import SAE
from harmono.sae.config import SAEConfig
from harmono.sae.registry import REGISTRY


def saved_sae(directory, architecture="topk"):
    REGISTRY[architecture](SAEConfig(architecture, d_in=8, d_sae=16, k=2)).save_pretrained(directory)
    return directory / "config.json"


def saved_gpt(directory, head="standard"):
    GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=1, n_embd=8, head=head)).save_pretrained(
        directory
    )
    return directory / "config.json"


def edit(path, change, key=None):
    record = json.loads(path.read_text())
    if key is None:
        record.update(change)
    else:
        record[key].update(change)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("d_sae", "64", "int, got str '64'"), ("k", 4.0, "int, got float 4.0"), ("d_in", True, "int, got bool"),
     ("aux_coef", "0.1", "float, got str"), ("ste_to_input", 1, "bool, got int 1")],
)  # fmt: skip
def test_an_sae_config_field_of_the_wrong_type_names_file_field_and_types(
    tmp_path, unchanged, field, value, expected
):
    config = saved_sae(tmp_path)
    edit(config, {field: value})
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=f"{re.escape(str(config))}: field '{field}' expected {expected}"):
        SAE.from_pretrained(tmp_path)
    assert same()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("n_layer", "1", "int, got str '1'"), ("n_embd", 8.0, "int, got float 8.0"),
     ("bias", 0, "bool, got int 0"), ("head", 1, "str, got int 1")],
)  # fmt: skip
def test_a_gpt_config_field_of_the_wrong_type_names_file_field_and_types(
    tmp_path, unchanged, field, value, expected
):
    config = saved_gpt(tmp_path)
    edit(config, {field: value}, key="gpt")
    same = unchanged(tmp_path)
    with pytest.raises(
        ValueError, match=f"{re.escape(str(config))}: gpt: field '{field}' expected {expected}"
    ):
        GPT.from_pretrained(tmp_path)
    assert same()


def test_an_sae_config_edited_from_topk_to_relu_is_refused(tmp_path, unchanged):
    config = saved_sae(tmp_path)
    edit(config, {"architecture": "relu"})
    same = unchanged(tmp_path)
    weights = re.escape(str(tmp_path / "model.safetensors"))
    with pytest.raises(
        ValueError, match=f"{weights} does not fit its config: .*'sae/relu'.* got .*'sae/topk'"
    ):
        SAE.from_pretrained(tmp_path)
    assert same()


def test_a_gpt_config_edited_from_standard_to_harmonic_is_refused(tmp_path, unchanged):
    config = saved_gpt(tmp_path)
    edit(config, {"head": "harmonic"}, key="gpt")
    same = unchanged(tmp_path)
    weights = re.escape(str(tmp_path / "model.safetensors"))
    with pytest.raises(
        ValueError, match=f"{weights} does not fit its config: .*'gpt/harmonic'.* got .*'gpt/standard'"
    ):
        GPT.from_pretrained(tmp_path)
    assert same()


def test_weights_without_an_architecture_are_checked_tensor_by_tensor(tmp_path, unchanged):
    config = saved_sae(tmp_path, "batchtopk")
    weights = tmp_path / "model.safetensors"
    save_file(load_file(weights), weights)  # as saved before harmono stored the architecture
    edit(config, {"architecture": "topk"})
    same = unchanged(tmp_path)
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(weights))} does not fit .* unexpected \['threshold'\]"
    ):
        SAE.from_pretrained(tmp_path)
    edit(config, {"architecture": "batchtopk", "d_sae": 12})
    same = unchanged(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"missing \[\], unexpected \[\], mismatched shapes .*'b_enc': 'expected \(12,\), got \(16,\)'",
    ):
        SAE.from_pretrained(tmp_path)
    assert same()
