import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from harmono.cli import main
from harmono.experiments.harmonic import gpt_train
from harmono.experiments.harmonic.gpt_train import GPTTrainConfig, lr_at, step_offsets, train_gpt
from harmono.models.gpt import GPT, GPTConfig

pytest.importorskip("tokenizers", reason="the text extra (tokenizers) is not installed")

from harmono.data.text import TokenCorpus, prepare_corpus  # noqa: E402

VERSES = [
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n",
    "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n",
    "Sometime too hot the eye of heaven shines,\nAnd often is his gold complexion dimm'd;\n",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    documents = {f"sonnet{i}": "".join(VERSES[(i + j) % 3] for j in range(60)) for i in range(3)}
    prepare_corpus(documents, folder, vocab_size=320, val_fraction=0.2)
    return str(folder)


def model_config(head: str = "harmonic") -> GPTConfig:
    return GPTConfig(block_size=16, n_layer=2, n_head=2, n_embd=16, head=head, dropout=0.1)


def train_config(corpus: str, **overrides) -> GPTTrainConfig:
    settings = dict(data=corpus, batch_size=8, max_steps=6, lr=3e-3, min_lr=3e-4, warmup_steps=2,
                    eval_every=3, eval_batches=2, checkpoint_every=100, log_every=1,
                    device="cpu")  # fmt: skip
    return GPTTrainConfig(**{**settings, **overrides})


def metric_lines(out) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]


def test_learning_rate_warms_up_then_decays_to_min_lr():
    config = GPTTrainConfig(lr=1.0, min_lr=0.1, warmup_steps=4, max_steps=14)
    rates = [lr_at(config, step) for step in range(14)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and rates[9] == pytest.approx(0.55)
    assert rates[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.9)))
    assert lr_at(config, 14) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))


def test_ranks_and_micro_steps_tile_the_one_process_batch():
    config = GPTTrainConfig(batch_size=12, micro_batch=3, seed=4)
    whole = step_offsets(replace(config, micro_batch=0), 7, 1000, 0, 1).flatten()
    ranks = [step_offsets(config, 7, 1000, rank, 2) for rank in range(2)]
    assert ranks[0].shape == (2, 3)
    together = torch.stack(ranks, dim=1).flatten()  # (micro steps, ranks, micro_batch)
    assert torch.equal(together, whole)
    assert not torch.equal(step_offsets(config, 8, 1000, 0, 2), ranks[0])
    with pytest.raises(ValueError, match="batch_size must be a multiple of micro_batch x world size = 5 x 2"):
        step_offsets(replace(config, micro_batch=5), 0, 1000, 0, 2)


@pytest.mark.parametrize("head", ["standard", "harmonic"])
def test_training_lowers_the_validation_loss_and_saves_a_loadable_model(corpus, tmp_path, head):
    config = train_config(corpus, max_steps=80, eval_every=80, batch_size=16, lr=1e-2, min_lr=1e-3)
    result = train_gpt(model_config(head), config, tmp_path, progress=False)
    tokens = TokenCorpus.open(corpus)
    full = gpt_train.full_validation_offsets(tokens, 16)
    torch.manual_seed(0)
    untrained = gpt_train.evaluate_gpt(
        GPT(replace(model_config(head), vocab_size=320)), tokens, full, 8, "cpu"
    )
    metrics = json.loads((tmp_path / "results.json").read_text())
    assert metrics == result.metrics and metrics["head"] == head and metrics["tokens"] == 80 * 16 * 16
    assert metrics["final_val_loss"] < untrained - 1.2  # the verses repeat: much is learnable
    loaded = GPT.from_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "tokenizer.json").is_file()
    x = torch.randint(320, (2, 16))
    torch.testing.assert_close(loaded(x), result.model(x))
    assert metrics["final_val_tokens"] == len(full) * 16
    assert metrics["final_val_loss"] == pytest.approx(gpt_train.evaluate_gpt(loaded, tokens, full, 8, "cpu"))


def test_full_validation_covers_the_split_in_disjoint_windows(corpus):
    tokens = TokenCorpus.open(corpus)
    offsets = gpt_train.full_validation_offsets(tokens, 16)
    assert offsets[1] - offsets[0] == 16 and offsets[-1] + 16 + 1 <= len(tokens.splits["val"])
    assert len(tokens.splits["val"]) - (offsets[-1] + 16) <= 16


def test_evaluation_is_the_mean_token_nll(corpus):
    model = GPT(replace(model_config("standard"), vocab_size=320)).eval()
    tokens = TokenCorpus.open(corpus)
    offsets = torch.tensor([0, 5, 40])
    x, y = tokens.batch("val", offsets, 16)
    with torch.no_grad():
        logits = torch.stack([model.logits(model.hidden(x))[i] for i in range(3)])
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    assert gpt_train.evaluate_gpt(model, tokens, offsets, 2, "cpu") == pytest.approx(
        float(expected), rel=1e-6
    )


def test_resumed_run_equals_the_uninterrupted_run(corpus, tmp_path):
    config = train_config(corpus, micro_batch=4, checkpoint_every=2)  # gradient accumulation and dropout
    whole = train_gpt(model_config(), config, tmp_path / "whole", progress=False)
    partial = train_gpt(model_config(), config, tmp_path / "parts", progress=False, stop_after_steps=3)
    assert partial.steps == 3 and not (tmp_path / "parts" / "results.json").exists()
    resumed = train_gpt(model_config(), config, tmp_path / "parts", progress=False)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert metric_lines(tmp_path / "whole") == metric_lines(tmp_path / "parts")
    assert resumed.metrics["final_val_loss"] == whole.metrics["final_val_loss"]


def test_resuming_with_other_settings_is_refused(corpus, tmp_path):
    config = train_config(corpus)
    train_gpt(model_config(), config, tmp_path, progress=False, stop_after_steps=2)
    with pytest.raises(ValueError, match="holds a run with another train"):
        train_gpt(model_config(), replace(config, lr=1e-2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="holds a run with another model"):
        train_gpt(model_config("standard"), config, tmp_path, progress=False)


def test_a_diverging_run_stops_with_a_message_and_keeps_its_checkpoint(corpus, tmp_path):
    config = train_config(corpus, checkpoint_every=1, lr=1e30, min_lr=1e29, warmup_steps=0, max_steps=50,
                          grad_clip=0.0)  # fmt: skip
    with pytest.raises(ValueError, match="expected a finite training loss, got nan; lower the learning rate"):
        train_gpt(model_config("standard"), config, tmp_path, progress=False)
    pointer = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert (tmp_path / "checkpoints" / pointer["directory"] / "state.safetensors").is_file()


def test_bad_settings_are_refused(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"expected vocab_size >= 320 \(the corpus' vocabulary\), got 100"):
        train_gpt(replace(model_config(), vocab_size=100), train_config(corpus), tmp_path, progress=False)
    with pytest.raises(ValueError, match="expected more than block_size = 1600 tokens in the val split"):
        train_gpt(replace(model_config(), block_size=1600), train_config(corpus), tmp_path, progress=False)
    with pytest.raises(ValueError, match="expected more than block_size = 9999 tokens in the train split"):
        train_gpt(replace(model_config(), block_size=9999), train_config(corpus), tmp_path, progress=False)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(FileNotFoundError, match="is not a prepared corpus"):
        train_gpt(model_config(), train_config(str(tmp_path)), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="min_lr must be <= lr"):
        GPTTrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="precision must be one of"):
        GPTTrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="beta2 must lie in"):
        GPTTrainConfig(beta2=1.0)


def ddp_worker(rank, world_size, init_file, corpus, out, weights_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        result = train_gpt(DDP_MODEL, train_config(corpus, **DDP_SETTINGS), out, progress=False)
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, f"{weights_file}.{rank}")
    finally:
        dist.destroy_process_group()


DDP_SETTINGS = dict(max_steps=2, micro_batch=4, eval_every=2)
DDP_MODEL = replace(model_config(), dropout=0.0)  # dropout draws differ between ranks and one process


def test_two_gloo_processes_take_the_step_of_one_process_with_the_doubled_batch(corpus, tmp_path):
    weights = tmp_path / "weights"
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), corpus, str(tmp_path / "ddp"), str(weights)),
             nprocs=2, join=True)  # fmt: skip
    rank0, rank1 = load_file(f"{weights}.0"), load_file(f"{weights}.1")
    # one process, micro batches of 8: the same 8 windows per step as 2 ranks x 4
    single = train_gpt(DDP_MODEL, train_config(corpus, max_steps=2, eval_every=2, micro_batch=8),
                       tmp_path / "single", progress=False)  # fmt: skip
    for name, value in single.model.state_dict().items():
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-6)
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert ddp["final_val_loss"] == pytest.approx(single.metrics["final_val_loss"], rel=1e-5)
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2


def test_torchrun_trains_one_model_with_two_processes(corpus, tmp_path):
    common = ["--data", corpus, "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
              "--head", "harmonic", "--batch-size", "8", "--max-steps", "2", "--eval-every", "2",
              "--eval-batches", "1", "--device", "cpu", "--no-progress"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "harmono.cli", "gpt", "train", "--out", str(tmp_path / "ddp"), *common]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["gpt", "train", "--out", str(tmp_path / "one"), *common]) == 0
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    two = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6)
