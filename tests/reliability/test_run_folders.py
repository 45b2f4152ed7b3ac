"""`sae train --out DIR` refuses a folder holding a finished or foreign run unless told to overwrite it."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from harmono.cli import main
from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.sae import SAEConfig
from harmono.sae.train import TrainConfig, train_sae

D_IN = 8
SAE_CONFIG = SAEConfig("topk", d_in=D_IN, d_sae=16, k=2)
CONFIG = TrainConfig(
    epochs=2, batch_size=64, lr=1e-3, l2_normalize=False, b_dec_init="zeros", init_samples=64
)
CLI_SETTINGS = "--d-sae 16 --k 2 --epochs 2 --batch-size 64 --lr 1e-3 --no-l2-normalize".split() + [
    *"--b-dec-init zeros --init-samples 64 --no-progress".split()
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("store")
    x = np.random.default_rng(0).standard_normal((256, D_IN)).astype(np.float32)
    with FeatureStoreWriter(directory, D_IN, {"dataset": "random"}, dtype="float32") as writer:
        writer.append(x, [str(i) for i in range(len(x))], [0] * len(x))
    return FeatureStore(directory)


def hashes(folder):
    """SHA-256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def train(store, out, **kwargs):
    return train_sae(SAE_CONFIG, CONFIG, store, out, progress=False, **kwargs)


def test_a_finished_run_without_its_checkpoints_is_refused_and_left_byte_identical(store, tmp_path):
    out = tmp_path / "run"
    train(store, out)
    shutil.rmtree(out / "checkpoints")
    before = hashes(out)
    with pytest.raises(FileExistsError) as err:
        train(store, out)
    assert str(out) in str(err.value) and "finished run (sae)" in str(err.value)
    assert "--overwrite" in str(err.value)
    assert hashes(out) == before


def test_the_cli_refuses_it_too_and_overwrite_trains_afresh(store, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["sae", "train", "--arch", "topk", "--features", str(store.directory), "--out", str(out)]
    assert main([*command, *CLI_SETTINGS]) == 0
    shutil.rmtree(out / "checkpoints")
    (out / "notes.txt").write_text("mine")
    before = hashes(out)
    capsys.readouterr()
    assert main([*command, *CLI_SETTINGS]) == 2
    message = capsys.readouterr().err
    assert str(out) in message and "notes.txt" in message
    assert hashes(out) == before
    assert main([*command, *CLI_SETTINGS, "--overwrite"]) == 0
    assert (out / "checkpoints" / "latest.json").is_file() and (out / "sae" / "model.safetensors").is_file()
    assert (out / "notes.txt").read_text() == "mine"  # files no run wrote stay


@pytest.mark.parametrize(
    "contents",
    [
        {"manifest.json": "{}"},  # e.g. a feature store
        {"run.json": json.dumps({"model": "gpt"})},  # another trainer's run
        {"run.json": "not json"},
        {"sae/model.safetensors": "weights"},
    ],
)
def test_a_folder_with_foreign_files_is_refused_and_left_byte_identical(store, tmp_path, contents):
    out = tmp_path / "run"
    for name, text in contents.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = hashes(out)
    with pytest.raises(FileExistsError) as err:
        train(store, out)
    assert str(out) in str(err.value)
    assert any(name.split("/")[0] in str(err.value) for name in contents)
    assert hashes(out) == before


def test_a_run_with_other_settings_is_refused_and_left_byte_identical(store, tmp_path):
    out = tmp_path / "run"
    train(store, out)
    before = hashes(out)
    with pytest.raises(ValueError, match="holds a run with another sae") as err:
        train_sae(SAEConfig("topk", d_in=D_IN, d_sae=32, k=2), CONFIG, store, out, progress=False)
    assert str(out) in str(err.value)
    assert hashes(out) == before


def test_runs_of_the_same_settings_still_resume(store, tmp_path):
    out = tmp_path / "run"
    first = train(store, out)
    before = hashes(out)
    again = train(store, out)  # finished, with its last checkpoint: the same SAE, nothing trained
    assert again.steps == first.steps and hashes(out) == before
    killed = tmp_path / "killed"  # killed before its first checkpoint: run.json and metrics only
    killed.mkdir()
    shutil.copy(out / "run.json", killed / "run.json")
    (killed / "metrics.jsonl").write_text("")
    resumed = train(store, killed)
    assert hashes(killed)["sae/model.safetensors"] == before["sae/model.safetensors"]
    assert resumed.steps == first.steps


def test_overwrite_replaces_a_run_with_other_settings(store, tmp_path):
    out = tmp_path / "run"
    train(store, out)
    other = SAEConfig("topk", d_in=D_IN, d_sae=32, k=2)
    result = train_sae(other, CONFIG, store, out, progress=False, overwrite=True)
    assert result.sae.config.d_sae == 32
    assert json.loads((out / "run.json").read_text())["sae"]["d_sae"] == 32
