"""Finetuning with MonoLoss: finite gradients, λ = 0 is plain finetuning, resume, DDP, end to end, errors."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from harmono.data.image_batches import epoch_order
from harmono.data.images import ImageSet
from harmono.experiments.mono.finetune import finetune, lr_factor
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.experiments.mono.finetune_eval import evaluate_classifier
from harmono.experiments.mono.finetune_sweep import run_sweep, summarize_sweep
from harmono.features import FeatureStoreWriter
from harmono.models.classifier import ClassifierConfig, MonoClassifier
from harmono.mono import mono_loss
from naive_mono import naive_mono_score

SIDE, CLASSES = 16, 3


def bar_images(n, seed, prefix):
    """Class c: a bright horizontal bar in band c of a noisy 16x16 image."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.integers(0, 60, size=(n, SIDE, SIDE)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 5 * label + rng.integers(0, 2)
        images[i, row : row + 2, 2:14] = 230
    return ImageSet(f"{prefix}/all", labels.astype(np.int64), ("a", "b", "c"),
                    tuple(f"{prefix}:{i}" for i in range(n)), images=images)  # fmt: skip


@pytest.fixture(scope="module")
def images():
    return bar_images(96, 0, "train"), bar_images(48, 1, "val")


def tiny_model(**overrides):
    return ClassifierConfig(
        **{
            "num_classes": CLASSES,
            "backbone": "tiny-cnn",
            "backbone_weights": "random",
            "image_size": SIDE,
            "expansion": 2,
            **overrides,
        }  # fmt: skip
    )


def tiny_config(**overrides):
    return FinetuneConfig(
        **{
            "train_size": 0,
            "val_size": 0,
            "epochs": 2,
            "batch_size": 16,
            "eval_batch_size": 32,
            "lr": 3e-3,
            "device": "cpu",
            "checkpoint_every": 2,
            "log_every": 1,
            **overrides,
        }  # fmt: skip
    )


def run(images, out, model_config=None, stop_after_steps=0, **overrides):
    train, val = images
    return finetune(model_config or tiny_model(), tiny_config(**overrides), out, train_set=train, val_set=val,
                    progress=False, stop_after_steps=stop_after_steps)  # fmt: skip


def saved_weights(out):
    return load_file(out / "model" / "model.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def official_style_mono_loss(hidden, emb):
    """The official finetuning regulariser's batch score: min-max without eps, mean over all units."""
    low, high = hidden.amin(dim=0), hidden.amax(dim=0)
    normed = (hidden - low) / (high - low)
    unit = F.normalize(emb, dim=1)
    projected = unit.T @ normed
    sq_sum, total = normed.square().sum(dim=0), normed.sum(dim=0)
    numerator = 0.5 * (projected.square().sum(dim=0) - sq_sum)
    denominator = 0.5 * (total.square() - sq_sum)
    scores = torch.where(denominator > 1e-8, numerator / denominator, torch.zeros_like(numerator))
    return 1.0 - scores.mean()


def test_regularised_loss_has_finite_gradients_with_dead_and_constant_units():
    torch.manual_seed(0)
    model = MonoClassifier(tiny_model())
    with torch.no_grad():
        model.intermediate.weight[:2] = 0.0
        model.intermediate.bias[0] = -1.0  # dead: ReLU gives 0 on every image
        model.intermediate.bias[1] = 0.5  # constant: 0.5 on every image
    pixels, labels = torch.randn(8, 3, SIDE, SIDE), torch.arange(8) % CLASSES
    emb = torch.randn(8, 12)
    output = model(pixels)
    assert torch.all(output.hidden[:, 0] == 0) and torch.all(output.hidden[:, 1] == 0.5)
    loss = F.cross_entropy(output.logits, labels) + 0.1 * mono_loss(output.hidden, emb, average="all")
    loss.backward()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
    assert model.intermediate.weight.grad[2:].abs().sum() > 0  # the live units do get a mono gradient

    # the official formula (no eps) poisons every gradient through 0/0 even though it masks the score
    model.zero_grad()
    output = model(pixels)
    official_style_mono_loss(output.hidden, emb).backward()
    assert not torch.isfinite(model.intermediate.weight.grad).all()


def plain_finetuning(images, config, model_config):
    """Finetuning written out without harmono's loop: same init, order and optimizer groups, no MonoLoss."""
    train, _ = images
    torch.manual_seed(config.seed)
    model = MonoClassifier(model_config)
    decayed = [p for p in model.parameters() if p.ndim >= 2]
    plain = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=config.lr,
    )
    pixels = torch.from_numpy(train.images).float().div(255.0)[:, None].expand(-1, 3, -1, -1)
    labels = torch.from_numpy(train.labels)
    model.train()
    for epoch in range(config.epochs):
        order = epoch_order(len(train), config.seed, epoch)
        for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
            batch = torch.from_numpy(order[start : start + config.batch_size])
            loss = F.cross_entropy(model(model.normalize(pixels[batch])).logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {name: value.detach() for name, value in model.state_dict().items()}


def test_lambda_zero_reproduces_plain_finetuning_exactly(images, tmp_path):
    overrides = dict(mono_lambda=0.0, augment="none", schedule="constant")
    run(images, tmp_path / "run", **overrides)
    expected = plain_finetuning(images, tiny_config(**overrides), tiny_model())
    assert_same_weights(saved_weights(tmp_path / "run"), expected)
    # and the regulariser does change training when it is on
    run(images, tmp_path / "mono", **{**overrides, "mono_lambda": 1.0})
    changed = saved_weights(tmp_path / "mono")
    assert not torch.equal(changed["intermediate.weight"], expected["intermediate.weight"])


def test_resumed_run_ends_like_an_uninterrupted_one(images, tmp_path):
    overrides = dict(mono_lambda=0.1, mixup_alpha=0.4, cutmix_alpha=1.0, ema_decay=0.9, epochs=3)
    model_config = tiny_model(head="harmonic")
    whole = run(images, tmp_path / "whole", model_config, **overrides)
    partial = run(images, tmp_path / "cut", model_config, stop_after_steps=5, **overrides)
    assert not (tmp_path / "cut" / "model").exists() and not partial.metrics
    resumed = run(images, tmp_path / "cut", model_config, **overrides)
    assert_same_weights(saved_weights(tmp_path / "whole"), saved_weights(tmp_path / "cut"))
    assert resumed.metrics == whole.metrics
    lines = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert lines == reference


def test_end_to_end_on_synthetic_images_learns_and_reloads(images, tmp_path):
    model_config = tiny_model(head="harmonic", topk=8)
    result = run(images, tmp_path / "run", model_config, mono_lambda=0.1, epochs=8, augment="flip")
    assert result.metrics["val_accuracy"] >= 0.9  # three bar positions: chance is 1/3
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["val_accuracy"] == result.metrics["val_accuracy"] and results["steps"] == 8 * 6
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "mono_loss", "accuracy", "lr"} <= set(records[0])
    assert sum("val_monoscore" in record for record in records) == 8
    reloaded = MonoClassifier.from_pretrained(tmp_path / "run" / "model")
    _, val = images
    pixels = torch.from_numpy(val.images).float().div(255.0)[:, None].expand(-1, 3, -1, -1)
    with torch.no_grad():
        predictions = reloaded(reloaded.normalize(pixels)).logits.argmax(dim=1)
    accuracy = float((predictions == torch.from_numpy(val.labels)).float().mean())
    assert accuracy == pytest.approx(result.metrics["val_accuracy"], abs=1e-6)


def test_validation_monoscore_is_the_dataset_score_of_the_intermediate_units(images):
    _, val = images
    torch.manual_seed(1)
    model = MonoClassifier(tiny_model()).eval()
    reference = MonoClassifier(tiny_model()).eval()
    pixels = torch.from_numpy(val.images).float().div(255.0)[:, None].expand(-1, 3, -1, -1)

    class Reference:
        dim = 32

        def __call__(self, batch_pixels, positions):
            with torch.no_grad():
                return reference.backbone(reference.normalize(batch_pixels))

    from harmono.data.image_batches import SquareImages

    data = SquareImages(val, np.arange(len(val)), SIDE)
    metrics = evaluate_classifier(model, data, Reference(), batch_size=20, device=torch.device("cpu"))
    with torch.no_grad():
        output = model(model.normalize(pixels))
        emb = reference.backbone(reference.normalize(pixels))
    naive = naive_mono_score(output.hidden, emb, eps=1e-8)
    dead = torch.isnan(naive)
    assert metrics["val_dead_units"] == int(dead.sum())
    assert metrics["val_monoscore"] == pytest.approx(float(torch.where(dead, 0.0, naive).mean()), abs=1e-6)
    assert metrics["val_monoscore_alive"] == pytest.approx(float(naive[~dead].mean()), abs=1e-6)
    labels = torch.from_numpy(val.labels)
    assert metrics["val_accuracy"] == pytest.approx(float((output.logits.argmax(1) == labels).float().mean()))
    assert metrics["val_ce"] == pytest.approx(float(F.cross_entropy(output.logits, labels)), rel=1e-5)


def test_reference_embeddings_from_a_store_by_sample_id(images, tmp_path):
    train, val = images
    for name, dataset in (("train", train), ("val", val)):
        rng = np.random.default_rng(len(dataset))
        with FeatureStoreWriter(tmp_path / name, 8, {"dataset": name}, dtype="float32") as writer:
            order = rng.permutation(len(dataset))  # stored in another order than the dataset's
            writer.append(rng.normal(size=(len(dataset), 8)).astype(np.float32)[order],
                          [dataset.ids[i] for i in order], dataset.labels[order])  # fmt: skip
    stores = dict(reference_store=str(tmp_path / "train"), reference_val_store=str(tmp_path / "val"))
    result = run(images, tmp_path / "run", mono_lambda=0.1, reference="store", **stores)
    assert 0 <= result.metrics["val_dead_units"] <= 64 and np.isfinite(result.metrics["val_monoscore"])
    with pytest.raises(ValueError, match=r"expected reference embeddings of every sample, 48 of 48 are"):
        run(images, tmp_path / "wrong", mono_lambda=0.1, reference="store",
            reference_store=str(tmp_path / "train"), reference_val_store=str(tmp_path / "train"))  # fmt: skip


def ddp_worker(rank, world_size, init_file, out, weights_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        result = run((bar_images(96, 0, "train"), bar_images(48, 1, "val")), out, **DDP_SETTINGS)
        state = {name: value.contiguous() for name, value in result.model.state_dict().items()}
        save_file(state, f"{weights_file}.{rank}")
    finally:
        dist.destroy_process_group()


DDP_SETTINGS = dict(mono_lambda=0.0, augment="none", batch_size=32, epochs=1)


def test_two_gloo_processes_finetune_like_one_process_with_the_whole_batch(images, tmp_path):
    weights = tmp_path / "weights"
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), str(weights)), nprocs=2,
             join=True)  # fmt: skip
    rank0, rank1 = load_file(f"{weights}.0"), load_file(f"{weights}.1")
    single = run(images, tmp_path / "single", **DDP_SETTINGS).model.state_dict()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2


def test_schedules():
    config = tiny_config(warmup_epochs=1.0, epochs=3)
    factors = [lr_factor(config, 10, 30, step) for step in range(30)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 19 / 20)))
    step = replace(config, schedule="step", step_epochs=1, step_gamma=0.5, warmup_epochs=0.0)
    assert [lr_factor(step, 10, 30, s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_sweep_reuses_finished_runs_and_summarises_over_seeds(images, tmp_path, monkeypatch):
    train, val = images
    import harmono.experiments.mono.finetune_sweep as sweep_module

    def on_synthetic(model_config, config, out, progress):
        return finetune(model_config, config, out, train_set=train, val_set=val, progress=False)

    monkeypatch.setattr(sweep_module, "finetune", on_synthetic)
    calls = iter(range(1, 10))
    monkeypatch.setattr(sweep_module, "provenance", lambda: {"call": next(calls)})
    rows = run_sweep(tiny_model(), tiny_config(epochs=1), [0.0, 0.5], [0, 1], tmp_path, progress=False)
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["mono_lambda"], r["seed"]) for r in record["runs"]] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    for row in rows:
        accuracies = [r["val_accuracy"] for r in record["runs"] if r["mono_lambda"] == row["mono_lambda"]]
        assert row["accuracy_mean"] == pytest.approx(np.mean(accuracies))
        assert row["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summarize_sweep(record["runs"]) == rows

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_module, "finetune", must_not_train)
    again = run_sweep(tiny_model(), tiny_config(epochs=1), [0.0, 0.5], [0, 1], tmp_path, progress=False)
    assert again == rows
    # nothing trained again: the record keeps the provenance of the call that trained
    assert record["provenance"] == {"call": 1}
    assert json.loads((tmp_path / "sweep.json").read_text())["provenance"] == {"call": 1}
    with pytest.raises(ValueError, match="holds a finished run with another train"):
        run_sweep(tiny_model(), tiny_config(epochs=1, lr=1e-2), [0.0], [0], tmp_path, progress=False)


def test_bad_input_is_reported_and_leaves_the_run_resumable(images, tmp_path):
    with pytest.raises(ValueError, match=r"expected num_classes = 3 \(the dataset's\), got 5"):
        run(images, tmp_path / "a", tiny_model(num_classes=5))
    with pytest.raises(ValueError, match=r"expected at least batch_size = 128 training images, got 96"):
        run(images, tmp_path / "b", batch_size=128)
    with pytest.raises(ValueError, match="reference='store' needs reference_store"):
        tiny_config(reference="store")
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        tiny_config(label_smoothing=1.0)
    with pytest.raises(ValueError, match="topk must be below the intermediate width 64"):
        MonoClassifier(tiny_model(topk=64))
    out = tmp_path / "run"
    run(images, out, stop_after_steps=2)
    with pytest.raises(ValueError, match="holds a run with another train"):
        run(images, out, lr=0.5)
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"expected a finite training loss, got (nan|inf)"):
        run(images, tmp_path / "nan", lr=1e30, optimizer="sgd")
    assert before == {p.name: p.read_bytes() for p in (out / "checkpoints").rglob("*") if p.is_file()}
    run(images, out)  # the interrupted run still resumes with its own settings
    assert (out / "results.json").is_file()
