"""A truncated or foreign ``.safetensors`` file is a ValueError naming it, and nothing on disk changes."""

import re

import pytest
import torch

from harmono.core.io import read_safetensors
from harmono.experiments.harmonic.toy_suite import load_run
from harmono.models.gpt import GPT, GPTConfig
from harmono.sae import SAE
from harmono.sae.config import SAEConfig
from harmono.sae.registry import REGISTRY
from harmono.sae.top_activations import TopActivations, load_top_activations
from harmono.training.checkpoint import load_checkpoint, save_checkpoint


def truncate(path, keep=None):
    """Cut ``path`` to ``keep`` bytes (default: half of it)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def tiny_sae():
    return REGISTRY["topk"](SAEConfig("topk", d_in=8, d_sae=16, k=2))


def tiny_gpt(head="standard"):
    return GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=1, n_embd=8, head=head))


def damaged_message(path):
    return re.escape(str(path)) + " is truncated or not a safetensors file"


@pytest.mark.parametrize("keep", [None, 4, 0])
def test_a_truncated_sae_is_a_value_error_naming_the_file(tmp_path, unchanged, keep):
    tiny_sae().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    truncate(weights, keep)
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=damaged_message(weights)):
        SAE.from_pretrained(tmp_path)
    assert same()


def test_a_truncated_gpt_is_a_value_error_naming_the_file(tmp_path, unchanged):
    tiny_gpt().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    truncate(weights)
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=damaged_message(weights)):
        GPT.from_pretrained(tmp_path)
    assert same()


def test_a_file_that_is_no_safetensors_is_a_value_error_naming_it(tmp_path, unchanged):
    path = tmp_path / "x.safetensors"
    path.write_text("not tensors at all, just some text that is long enough")
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=damaged_message(path)):
        read_safetensors(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.safetensors"))):
        read_safetensors(tmp_path / "missing.safetensors")
    assert same()


def test_the_only_checkpoint_truncated_is_a_value_error_naming_it(tmp_path, unchanged):
    save_checkpoint(tmp_path, 5, {"model.w": torch.ones(64)}, {"optimizer": {}})
    state = tmp_path / "step_000000005" / "state.safetensors"
    truncate(state)
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=damaged_message(state)):
        load_checkpoint(tmp_path)
    assert same()


def test_truncated_top_activations_and_toy_curves_name_their_file(tmp_path, unchanged):
    top = TopActivations(4, 3)
    top.update(torch.rand(5, 4), torch.arange(5))
    path = top.save(tmp_path / "top_activations.safetensors")
    truncate(path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    (run / "curves.safetensors").write_bytes(b"\x08\x00")
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=damaged_message(path)):
        load_top_activations(path)
    with pytest.raises(ValueError, match=damaged_message(run / "curves.safetensors")):
        load_run(run)
    assert same()
