"""``harmono finetune`` and ``harmono finetune sweep`` on an image folder; config layering and recipes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from harmono.cli import main
from harmono.cli.finetune import RECIPES, read_recipe
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.models.classifier import ClassifierConfig

Image = pytest.importorskip("PIL.Image", reason="image folders need pillow (harmono[vision])")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("left", "right")):
        (root / name).mkdir()
        for i in range(24):
            pixels = rng.integers(0, 50, size=(20, 24, 3)).astype(np.uint8)
            pixels[:, 12 * label : 12 * label + 12] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def options(folder, **extra):
    values = {"--backbone": "tiny-cnn", "--backbone-weights": "random", "--image-size": "16",
              "--dataset": f"folder:{folder}", "--train-split": "all", "--val-split": "all",
              "--train-size": "32", "--val-size": "16", "--epochs": "1", "--batch-size": "8",
              "--device": "cpu", **extra}  # fmt: skip
    return [item for pair in values.items() for item in pair] + ["--no-progress"]


def test_finetune_trains_on_an_image_folder_with_disjoint_validation(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["finetune", "--out", str(out), *options(folder, **{"--mono-lambda": "0.1"})]) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy" in printed and "MonoScore" in printed
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["num_classes"] == 2 and record["train"]["mono_lambda"] == 0.1
    assert (record["train_images"], record["val_images"]) == (32, 16)
    assert (out / "model" / "model.safetensors").is_file() and (out / "results.json").is_file()


def test_sweep_layers_typed_options_over_the_config_file_over_defaults(folder, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"expansion": 2}, "train": {"lr": 0.01, "epochs": 2}}))
    out = tmp_path / "sweep"
    argv = ["finetune", "sweep", "--out", str(out), "--config", str(config), "--mono-lambda", "0", "0.2",
            "--seeds", "2", "--results", str(tmp_path / "records"),
            *options(folder, **{"--epochs": "1"})]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "val MonoScore" in table and "0.2" in table
    record = json.loads((out / "sweep.json").read_text())
    assert record["model"]["expansion"] == 2  # from the file
    assert record["train"]["lr"] == 0.01  # from the file
    assert record["train"]["epochs"] == 1  # typed, over the file
    assert record["train"]["weight_decay"] == FinetuneConfig().weight_decay  # default
    assert len(record["runs"]) == 4 and {r["seed"] for r in record["runs"]} == {0, 1}
    assert record["provenance"]["torch"] == torch.__version__
    local = {**record["train"], "dataset": f"folder:<local>/{folder.name}"}  # the copy keeps no local path
    assert json.loads((tmp_path / "records" / "sweep.json").read_text()) == {**record, "train": local}


def test_recipes_are_valid_configs_and_bad_configs_are_reported(tmp_path, capsys):
    for name in RECIPES:
        record = read_recipe(name)
        ClassifierConfig(**{"num_classes": 10, **record["model"]})
        FinetuneConfig(**record["train"])
    assert read_recipe("resnet50-imagenet")["model"]["backbone"] == "torchvision:resnet50"
    assert read_recipe("clip-vit-b32-imagenet")["model"]["lora_rank"] == 16
    with pytest.raises(FileNotFoundError, match="--config must be one of"):
        read_recipe(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"heads": "linear"}, "train": {}}))
    with pytest.raises(ValueError, match=r"model fields .*, got unknown \['heads'\]"):
        read_recipe(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_recipe(str(bad))
    assert main(["finetune", "--backbone", "tiny-cnn"]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_torchrun_two_gloo_processes_train_like_one(folder, tmp_path):
    settings = options(folder, **{"--mono-lambda": "0", "--augment": "none", "--batch-size": "16"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "harmono.cli", "finetune", "--out", str(tmp_path / "ddp"), *settings]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    assert main(["finetune", "--out", str(tmp_path / "single"), *settings]) == 0
    ddp = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    single = load_file(tmp_path / "single" / "model" / "model.safetensors")
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5)
