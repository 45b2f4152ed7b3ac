"""The worked example of docs/sae.md: a foreign SAE and a harmono SAE scored on one store, side by side."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harmono.cli import main
from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.mono import mono_score
from harmono.sae import SAE

ROWS, D_IN, D_SAE, K = 300, 16, 48, 4


@pytest.fixture
def store(tmp_path):
    """A labelled store of 300 rows with 3 classes, each class around its own direction."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, ROWS)
    centres = rng.normal(size=(3, D_IN)) * 2
    features = (centres[labels] + rng.normal(size=(ROWS, D_IN))).astype(np.float32)
    metadata = {
        "encoder": "toy-encoder",
        "output": "pooled",
        "dataset": "toy",
        "class_names": ["a", "b", "c"],
    }
    with FeatureStoreWriter(tmp_path / "store", D_IN, metadata, dtype="float32", shard_rows=128) as writer:
        writer.append(features, [f"s{i}" for i in range(ROWS)], labels.tolist())
    return FeatureStore(tmp_path / "store")


def sparsify_folder(path):
    """A sparsify hookpoint folder with random weights, written from sparsify's documented layout."""
    generator = torch.Generator().manual_seed(1)
    path.mkdir(parents=True)
    tensors = {"encoder.weight": torch.randn(D_SAE, D_IN, generator=generator) / 4,
               "encoder.bias": torch.zeros(D_SAE), "W_dec": torch.randn(D_SAE, D_IN, generator=generator) / 4,
               "b_dec": torch.zeros(D_IN)}  # fmt: skip
    save_file(tensors, str(path / "sae.safetensors"))
    (path / "cfg.json").write_text(
        json.dumps({"activation": "topk", "num_latents": D_SAE, "k": K, "d_in": D_IN})
    )
    return path


def test_score_a_foreign_sae_beside_a_harmono_sae(tmp_path, store, capsys):
    store_dir = str(store.directory)
    train = ["sae", "train", "--arch", "topk", "--features", store_dir, "--d-sae", str(D_SAE), "--k", str(K),
             "--epochs", "3", "--batch-size", "64", "--lr", "3e-3", "--out", str(tmp_path / "harmono"),
             "--no-progress"]  # fmt: skip
    assert main(train) == 0
    assert main(["sae", "eval", str(tmp_path / "harmono"), "--features", store_dir, "--no-progress"]) == 0
    foreign = sparsify_folder(tmp_path / "sparsify-run" / "layers.0")
    capsys.readouterr()
    evaluated = tmp_path / "sparsify-eval"
    argv = ["sae", "eval", str(foreign), "--features", store_dir, "--out", str(evaluated), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((evaluated / "evaluation.json").read_text())
    assert record["sae"]["format"] == "sparsify" and record["l2_normalize"] is False  # raw rows by default
    # the same numbers from the library: the SAE on the raw rows, and mono_score on its latents
    sae = SAE.from_pretrained(foreign)
    x = torch.from_numpy(store.take(np.arange(ROWS), "float32"))
    latents, recon = sae.reconstruct(x)
    assert summary["l0"] == pytest.approx(float((latents != 0).sum(dim=1).float().mean()), rel=1e-6)
    fvu = float((recon - x).double().square().sum() / (x.double() - x.double().mean(0)).square().sum())
    assert summary["r2"] == pytest.approx(1 - fvu, rel=1e-5)
    scores = mono_score(latents.double(), x.double())
    assert summary["mono"]["mean"] == pytest.approx(float(scores[~scores.isnan()].mean()), rel=1e-4)
    assert main(["sae", "compare", str(tmp_path / "harmono"), str(evaluated), "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "| topk " in table and "sparsify:sae" in table
    assert main(["report", str(evaluated)]) == 0
    assert (evaluated / "report.html").is_file()


def test_export_to_saelens_from_the_command_line(tmp_path, store, capsys):
    train = ["sae", "train", "--arch", "jumprelu", "--features", str(store.directory), "--d-sae", "48",
             "--k", "4", "--epochs", "1", "--batch-size", "64", "--out", str(tmp_path / "run"),
             "--no-progress"]  # fmt: skip
    assert main(train) == 0
    out = tmp_path / "saelens"
    assert main(["sae", "export", str(tmp_path / "run"), "--format", "saelens", "--out", str(out)]) == 0
    config = json.loads((out / "cfg.json").read_text())
    assert config["metadata"]["model_name"] == "toy-encoder" and config["metadata"]["dataset_path"] == "toy"
    assert config["normalize_activations"] == "constant_norm_rescale"  # trained on L2-normalised rows
    x = torch.from_numpy(store.take(np.arange(20), "float32"))
    ours = SAE.from_pretrained(tmp_path / "run" / "sae")
    back = SAE.from_pretrained(out)
    assert torch.allclose(back.encode(x), ours.encode(torch.nn.functional.normalize(x, dim=1)), atol=1e-5)
    before = (out / "sae_weights.safetensors").read_bytes()
    assert main(["sae", "export", str(tmp_path / "run"), "--format", "saelens", "--out", str(out)]) == 2
    assert "holds a SAELens SAE already" in capsys.readouterr().err
    assert (out / "sae_weights.safetensors").read_bytes() == before
    assert main(["sae", "export", str(out), "--format", "saelens", "--out", str(tmp_path / "again")]) == 2
    assert "export writes harmono's own SAEs" in capsys.readouterr().err
