"""Training: dictionary recovery, resume after SIGKILL, DDP with 2 gloo processes, logging and errors."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.sae import ARCHITECTURES, SAE, SAEConfig
from harmono.sae.evaluate import evaluate_sae
from harmono.sae.synthetic import dictionary_recovery, sparse_dictionary_data
from harmono.sae.train import TrainConfig, train_sae

D_IN, ATOMS, ACTIVE = 32, 64, 3
RECIPES = {  # per architecture: SAE settings for the synthetic task
    "topk": dict(k=ACTIVE),
    "batchtopk": dict(k=ACTIVE),
    "jumprelu": dict(threshold_init=0.1, bandwidth=0.05, l0_coef=1e-3),
    "relu": dict(l1_coef=3e-3),
}


def write_store(path, x, labels=None):
    labels = [0] * len(x) if labels is None else labels
    with FeatureStoreWriter(
        path, x.shape[1], {"dataset": "synthetic", "class_names": ["a", "b"]}, dtype="float32"
    ) as writer:
        writer.append(x, [str(i) for i in range(len(x))], labels)
    return FeatureStore(path)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    data = sparse_dictionary_data(8192, D_IN, ATOMS, ACTIVE, seed=0)
    return data, write_store(tmp_path_factory.mktemp("synthetic"), data.x)


def synthetic_config(**overrides):
    return TrainConfig(
        **{
            "epochs": 25,
            "batch_size": 256,
            "lr": 1e-3,
            "l2_normalize": False,
            "b_dec_init": "zeros",
            **overrides,
        }
    )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_recovers_a_known_sparse_dictionary(synthetic, tmp_path, architecture):
    data, store = synthetic
    sae_config = SAEConfig(architecture, d_in=D_IN, d_sae=ATOMS, **RECIPES[architecture])
    result = train_sae(sae_config, synthetic_config(), store, tmp_path, progress=False)
    evaluation = evaluate_sae(result.sae, store, l2_normalize=False, progress=False)
    assert dictionary_recovery(data.atoms, result.sae.W_dec.detach()) >= 0.9
    assert evaluation.r2 >= 0.9
    loaded = SAE.from_pretrained(tmp_path / "sae")
    assert torch.equal(loaded.encode(data.x[:64]), result.sae.encode(data.x[:64]))


def test_metrics_name_every_loss_term_and_mono_loss_changes_training(synthetic, tmp_path):
    _, store = synthetic
    sae_config = SAEConfig("topk", d_in=D_IN, d_sae=ATOMS, k=ACTIVE)
    config = synthetic_config(epochs=1, log_every=8, dead_samples=512)
    plain = train_sae(sae_config, config, store, tmp_path / "plain", progress=False)
    mono = train_sae(
        sae_config,
        TrainConfig(**{**config.__dict__, "mono_coef": 0.5}),
        store,
        tmp_path / "mono",
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "mono" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(8, 33, 8))
    assert {"loss", "reconstruction", "aux", "mono", "l0", "dead_fraction", "lr", "samples_per_s"} <= set(
        records[-1]
    )
    assert records[-1]["loss"] == pytest.approx(
        records[-1]["reconstruction"] + records[-1]["aux"] + records[-1]["mono"], rel=1e-5
    )
    assert not torch.equal(plain.sae.W_enc, mono.sae.W_enc)
    run = json.loads((tmp_path / "mono" / "run.json").read_text())
    assert run["train"]["mono_coef"] == 0.5 and run["sae"]["architecture"] == "topk"


def test_bf16_autocast_keeps_fp32_parameters(synthetic, tmp_path):
    _, store = synthetic
    result = train_sae(
        SAEConfig("batchtopk", d_in=D_IN, d_sae=ATOMS, k=ACTIVE),
        synthetic_config(epochs=1, precision="bf16", mono_coef=0.1),
        store,
        tmp_path,
        progress=False,
    )
    assert all(p.dtype == torch.float32 for p in result.sae.parameters())
    assert result.sae.threshold.dtype == torch.float32 and result.sae.threshold > 0
    assert np.isfinite(result.last_metrics["loss"])


KILLABLE_RUN = """
import sys
import harmono
from harmono.features import FeatureStore
from harmono.sae import SAEConfig
from harmono.sae.train import TrainConfig, train_sae
config = TrainConfig(
    epochs=4, batch_size=32, lr=1e-3, l2_normalize=False, checkpoint_every=50, mono_coef=0.05,
    dead_samples=2048,
)
train_sae(SAEConfig("batchtopk", d_in=32, d_sae=64, k=3), config, FeatureStore(sys.argv[1]), sys.argv[2],
          progress=False)
"""


def run_training(store_dir, out, kill_after_step=None):
    child = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, str(store_dir), str(out)])
    if kill_after_step is None:
        assert child.wait(timeout=600) == 0
        return
    deadline = time.time() + 300
    latest = out / "checkpoints" / "latest.json"
    while time.time() < deadline and child.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= kill_after_step:
            break
        time.sleep(0.005)
    assert child.poll() is None, "the run ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_a_run_killed_and_resumed_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    data = sparse_dictionary_data(4096, 32, 64, 3, seed=1)
    store_dir = tmp_path / "store"
    write_store(store_dir, data.x)
    run_training(store_dir, tmp_path / "whole")
    run_training(store_dir, tmp_path / "killed", kill_after_step=100)
    assert not (tmp_path / "killed" / "sae").exists()
    run_training(store_dir, tmp_path / "killed")
    whole = load_file(tmp_path / "whole" / "sae" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "sae" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 512


def ddp_worker(rank, world_size, init_file, store_dir, out, weights_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        sae = train_ddp_run(store_dir, out)
        save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, f"{weights_file}.{rank}")
    finally:
        dist.destroy_process_group()


def train_ddp_run(store_dir, out):
    config = TrainConfig(
        epochs=3, batch_size=128, lr=1e-3, l2_normalize=False, b_dec_init="mean", mono_coef=0.0
    )
    sae_config = SAEConfig("topk", d_in=D_IN, d_sae=ATOMS, k=ACTIVE, aux_coef=0.0)
    return train_sae(sae_config, config, FeatureStore(store_dir), out, progress=False).sae


def test_two_gloo_processes_train_the_sae_one_process_trains_on_the_whole_batch(tmp_path):
    data = sparse_dictionary_data(128, D_IN, ATOMS, ACTIVE, seed=2)
    store_dir = tmp_path / "store"
    write_store(store_dir, data.x)
    weights = tmp_path / "weights"
    mp.spawn(
        ddp_worker,
        args=(2, str(tmp_path / "init"), str(store_dir), str(tmp_path / "ddp"), str(weights)),
        nprocs=2,
        join=True,
    )
    rank0, rank1 = load_file(f"{weights}.0"), load_file(f"{weights}.1")
    single = train_ddp_run(store_dir, tmp_path / "single").state_dict()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2


def test_bad_input_is_reported(synthetic, tmp_path):
    _, store = synthetic
    with pytest.raises(ValueError, match=r"expected features of d_in = 16, got .* with 32"):
        train_sae(SAEConfig("topk", d_in=16, d_sae=32, k=2), synthetic_config(), store, tmp_path / "a")
    empty_dir = tmp_path / "empty"
    with FeatureStoreWriter(empty_dir, D_IN, {"dataset": "none"}):
        pass
    with pytest.raises(ValueError, match="expected a store with features, got 0 rows"):
        train_sae(
            SAEConfig("topk", d_in=D_IN, d_sae=32, k=2), synthetic_config(), FeatureStore(empty_dir), tmp_path
        )
    x = torch.randn(64, D_IN)
    x[40, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        write_store(tmp_path / "nan", x)
    with pytest.raises(ValueError, match="mono_average must be one of"):
        TrainConfig(mono_average="median")
    sae_config = SAEConfig("topk", d_in=D_IN, d_sae=ATOMS, k=ACTIVE)
    train_sae(sae_config, synthetic_config(epochs=1), store, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="holds a run with another train"):
        train_sae(sae_config, synthetic_config(epochs=2, lr=5e-4), store, tmp_path / "run", progress=False)


def test_cli_train_eval_compare(synthetic, tmp_path, capsys):
    from harmono.cli import main

    _, store = synthetic
    common = [
        "--features",
        str(store.directory),
        "--d-sae",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "256",
        "--lr",
        "1e-3",
        "--no-l2-normalize",
        "--no-progress",
    ]
    for name, arch, extra in (
        ("plain", "topk", ["--k", "3"]),
        ("mono", "batchtopk", ["--k", "3", "--mono-coef", "0.1"]),
    ):
        assert main(["sae", "train", "--arch", arch, "--out", str(tmp_path / name), *common, *extra]) == 0
        assert (
            main(["sae", "eval", str(tmp_path / name), "--features", str(store.directory), "--no-progress"])
            == 0
        )
        summary = json.loads(capsys.readouterr().out.split("SAE saved in")[-1].split("\n", 1)[1])
        assert 0.5 < summary["r2"] <= 1 and summary["rows"] == len(store)
    assert main(["sae", "compare", str(tmp_path / "plain"), str(tmp_path / "mono")]) == 0
    table = capsys.readouterr().out
    assert "batchtopk" in table and "0.1" in table and "MonoScore" in table
    (tmp_path / "unevaluated").mkdir()
    assert main(["sae", "compare", str(tmp_path / "unevaluated")]) == 2
    assert "harmono sae eval" in capsys.readouterr().err
    assert main(["sae", "compare", str(tmp_path / "nothing")]) == 2
    assert "found neither" in capsys.readouterr().err
    assert (
        main(["sae", "train", "--arch", "topk", "--out", str(tmp_path / "bad"), *common, "--k", "100"]) == 2
    )
    assert "k must be <= d_sae = 64, got 100" in capsys.readouterr().err
