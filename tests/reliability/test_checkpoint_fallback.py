"""A resume falls back to the previous complete checkpoint when the newest is unreadable, changing nothing."""

import json
import logging
import re

import pytest
import torch

from harmono.training.checkpoint import load_checkpoint, save_checkpoint


def fake_training(root, steps):
    """Checkpoints of a fake run at ``steps``: small tensors, an optimizer record; returns their tensors."""
    saved = {}
    for step in steps:
        tensors = {
            "model.w": torch.full((4, 3), float(step)),
            "optimizer.0.exp_avg": torch.arange(3.0) * step,
        }
        save_checkpoint(root, step, tensors, {"optimizer": {"param_groups": [], "scalars": {}}})
        saved[step] = tensors
    return saved


def directory(root, step):
    return root / f"step_{step:09d}"


def test_the_previous_checkpoint_is_kept_and_a_partial_one_is_never_read(tmp_path):
    saved = fake_training(tmp_path, [10, 20, 30])
    assert sorted(d.name for d in tmp_path.iterdir()) == ["latest.json", "step_000000020", "step_000000030"]
    (tmp_path / "step_000000040.partial").mkdir()  # a save killed before its rename
    (tmp_path / "step_000000040.partial" / "state.json").write_text('{"step": 40}')
    tensors, record = load_checkpoint(tmp_path)
    assert record["step"] == 30 and torch.equal(tensors["model.w"], saved[30]["model.w"])
    fake_training(tmp_path, [40])
    assert sorted(d.name for d in tmp_path.iterdir()) == ["latest.json", "step_000000030", "step_000000040"]


def damage_state(root):
    path = directory(root, 20) / "state.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return path


def damage_latest(root):
    path = root / "latest.json"
    path.write_text('{"directory": "step_0000')
    return path


def damage_step(root):
    path = directory(root, 20) / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "step": "abc"}))
    return path


@pytest.mark.parametrize(("damage", "resumed"), [(damage_state, 10), (damage_latest, 20), (damage_step, 10)])
def test_an_unreadable_newest_checkpoint_falls_back_with_a_warning(
    tmp_path, unchanged, caplog, damage, resumed
):
    saved = fake_training(tmp_path, [10, 20])
    damaged = damage(tmp_path)
    same = unchanged(tmp_path)
    with caplog.at_level(logging.WARNING, logger="harmono.training.checkpoint"):
        tensors, record = load_checkpoint(tmp_path)
    assert record["step"] == resumed
    assert all(torch.equal(tensors[name], value) for name, value in saved[resumed].items())
    assert str(damaged) in caplog.text
    assert same()


def test_no_usable_checkpoint_is_a_value_error_naming_the_damaged_files(tmp_path, unchanged):
    fake_training(tmp_path, [10, 20])
    damaged = [damage_state(tmp_path), directory(tmp_path, 10) / "state.json"]
    damaged[1].write_text('{"step": 10, "optimizer"')
    same = unchanged(tmp_path)
    with pytest.raises(
        ValueError, match=f"expected a readable checkpoint under {re.escape(str(tmp_path))}"
    ) as err:
        load_checkpoint(tmp_path)
    assert all(str(path) in str(err.value) for path in damaged)
    assert "truncated or not a safetensors file" in str(err.value)
    assert same()


def test_a_corrupt_latest_json_and_no_checkpoint_is_a_value_error_naming_it(tmp_path, unchanged):
    assert load_checkpoint(tmp_path) is None
    tmp_path.joinpath("latest.json").write_text("[1, 2")
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "latest.json"))):
        load_checkpoint(tmp_path)
    assert same()
