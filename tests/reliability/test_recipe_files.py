"""A ``--config`` file whose values have the wrong type is refused, naming the file and the field."""

import json

import pytest

from harmono.cli import main
from harmono.cli.finetune import read_recipe
from harmono.cli.gpt import read_gpt_recipe


@pytest.mark.parametrize(
    ("record", "field", "expected"),
    [
        ({"model": {}, "train": {"max_steps": 2.5}}, "max_steps", "int"),
        ({"model": {"n_embd": True}, "train": {}}, "n_embd", "int"),
        ({"model": {}, "train": {"lr": "abc"}}, "lr", "float"),
        ({"model": {"head": 1}, "train": {}}, "head", "str"),
    ],
)
def test_gpt_recipe_field_types(tmp_path, unchanged, record, field, expected):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(record))
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match=rf"{path}: \w+: field '{field}' expected {expected}, got"):
        read_gpt_recipe(str(path))
    assert same()


def test_finetune_recipe_field_types_through_the_command(tmp_path, unchanged, capsys):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"model": {"backbone": 3}, "train": {}}))
    same = unchanged(tmp_path)
    with pytest.raises(ValueError, match="field 'backbone' expected str, got int 3"):
        read_recipe(str(path))
    assert main(["finetune", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert f"{path}: model: field 'backbone' expected str" in capsys.readouterr().err
    assert same() and not (tmp_path / "run").exists()


def test_an_int_is_a_valid_float(tmp_path):
    """JSON has one number type: ``"lr": 1`` where a float is expected is read as given."""
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"model": {}, "train": {"lr": 1, "max_steps": 3}}))
    assert read_gpt_recipe(str(path))["train"] == {"lr": 1, "max_steps": 3}
