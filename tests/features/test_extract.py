import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from harmono.analysis.probe import linear_probe
from harmono.cli import main
from harmono.data import ImageSet
from harmono.encoders.registry import load_encoder
from harmono.features import FeatureStore
from harmono.features.extract import ExtractConfig, extract_features

needs_efficientnet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="efficientnet-lite-pytorch is not installed (pip install 'harmono[vision]')",
)


def tiny_images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 20, 20)).astype(np.uint8)
    labels = np.arange(n, dtype=np.int64) % 3
    return ImageSet("tiny/all", labels, ("a", "b", "c"), tuple(f"tiny:{i}" for i in range(n)), images=images)


@needs_efficientnet
def test_preprocessing_replicates_gray_resizes_and_normalises():
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=32)
    gray = np.full((20, 24), 255, dtype=np.uint8)
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    pixels = encoder.preprocess([gray, rgb])
    assert pixels.shape == (2, 3, 32, 32)
    torch.testing.assert_close(pixels[0], torch.ones(3, 32, 32))  # (1 - 0.5) / 0.5
    torch.testing.assert_close(pixels[1], -torch.ones(3, 32, 32))


@needs_efficientnet
def test_encoder_features_are_the_pooled_last_feature_map():
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=32)
    images = list(tiny_images(4).images)
    features = encoder.encode(images)
    expected = encoder.model.extract_features(encoder.preprocess(images)).mean(dim=(2, 3))
    assert features.shape == (4, 1280) and encoder.feature_dim == 1280
    torch.testing.assert_close(features, expected)


@needs_efficientnet
def test_extraction_is_resumable_and_matches_direct_encoding(tmp_path):
    dataset = tiny_images()
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=32)
    config = ExtractConfig(batch_size=5, limit=7, dtype="float32", shard_rows=4)
    first = extract_features(dataset, encoder, tmp_path, config, progress=False)
    assert (first.extracted, first.skipped) == (7, 0)
    again = extract_features(
        dataset, encoder, tmp_path, ExtractConfig(batch_size=5, dtype="float32", shard_rows=4), progress=False
    )
    assert (again.extracted, again.skipped) == (5, 7)
    store = FeatureStore(tmp_path)
    assert store.ids == list(dataset.ids) and store.labels.tolist() == dataset.labels.tolist()
    (batch,) = store.view().batches(len(store))
    torch.testing.assert_close(batch.features, encoder.encode(list(dataset.images)), rtol=1e-5, atol=1e-5)
    assert store.metadata["encoder"] == "efficientnet-lite0" and store.metadata["class_names"] == [
        "a",
        "b",
        "c",
    ]


def test_unknown_encoder_and_bad_config():
    with pytest.raises(ValueError, match="encoder must be one of"):
        load_encoder("clip-vit-b-32")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        ExtractConfig(limit=-1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        ExtractConfig(dtype="int8")


def test_linear_probe_separates_separable_classes():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=gen) * 3
    labels = torch.arange(400) % 4
    features = centers[labels] + torch.randn(400, 16, generator=gen)
    result = linear_probe(features[:300], labels[:300], features[300:], labels[300:], 4)
    assert result.train_accuracy > 0.95 and result.test_accuracy > 0.9
    shuffled = linear_probe(
        features[:300], labels[torch.randperm(300, generator=gen)], features[300:], labels[300:], 4
    )
    assert shuffled.test_accuracy < 0.5


@needs_efficientnet
def test_cli_extract_info_probe(tmp_path, monkeypatch, capsys):
    from fake_data import fake_fashion_mnist

    fake_fashion_mnist(tmp_path / "fm", n_train=30, n_test=20)
    monkeypatch.setenv("HARMONO_FASHION_MNIST", str(tmp_path / "fm"))
    common = ["--image-size", "32", "--batch-size", "8", "--no-progress", "--dtype", "float32"]
    assert main(["features", "extract", "--out", str(tmp_path / "train"), "--limit", "24", *common]) == 0
    assert main(["features", "extract", "--split", "test", "--out", str(tmp_path / "test"), *common]) == 0
    out = capsys.readouterr().out
    assert "encoded 24 samples" in out and "encoded 20 samples" in out
    assert main(["features", "info", str(tmp_path / "train")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 24 and info["dim"] == 1280 and info["dataset"] == "fashion-mnist/train"
    assert main(["features", "probe", str(tmp_path / "train"), str(tmp_path / "test")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["features", "info", str(tmp_path / "nothing")]) == 2
    assert "is not a feature store" in capsys.readouterr().err


def test_paper_encoders_need_transformers_and_valid_arguments(monkeypatch):
    from harmono.encoders import huggingface as hf_encoders

    with pytest.raises(ValueError, match="weights must be 'pretrained' or 'random'"):
        hf_encoders.hf_encoder("vit", weights="imagenet")
    with pytest.raises(ValueError, match="encoder must be one of"):
        hf_encoders.hf_encoder("resnet50")
    monkeypatch.setattr(hf_encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install transformers"):
        load_encoder("dinov2")


@needs_efficientnet
def test_preprocessing_matches_pillow_per_channel():
    """Channel order, per-channel mean/std and antialiased resizing, against Pillow and numpy."""
    pil = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=16)
    encoder = dataclasses.replace(encoder, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    rng = np.random.default_rng(3)
    native = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    expected = (native / 255.0 - np.array(encoder.mean)) / np.array(encoder.std)
    np.testing.assert_allclose(encoder.preprocess([native])[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    large = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    large = (large.astype(int) + rng.integers(-20, 21, large.shape)).clip(0, 255).astype(np.uint8)
    resized = np.asarray(pil.fromarray(large).resize((16, 16), pil.BILINEAR), dtype=np.float64)
    expected = (resized / 255.0 - np.array(encoder.mean)) / np.array(encoder.std)
    got = encoder.preprocess([large])[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1.5 / 255 / min(encoder.std)  # Pillow rounds to uint8


@needs_efficientnet
def test_preprocessing_rejects_what_it_cannot_read():
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=32)
    for image, got in (
        (np.zeros((4, 4), np.float32), r"float32 \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), r"uint8 \(4, 4, 4\)"),
        (np.zeros(4, np.uint8), r"uint8 \(4,\)"),
    ):
        with pytest.raises(ValueError, match=rf"image 1: expected uint8 \(H, W\) or \(H, W, 3\), got {got}"):
            encoder.preprocess([np.zeros((4, 4), np.uint8), image])


@needs_efficientnet
def test_an_extraction_that_failed_can_be_retried_in_the_same_process(tmp_path):
    dataset = tiny_images()
    encoder = load_encoder("efficientnet-lite0", weights="random", image_size=32)
    config = ExtractConfig(batch_size=4, dtype="float32", shard_rows=4)
    calls = []

    def failing(pixels):
        calls.append(len(pixels))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encoder.features(pixels)

    with pytest.raises(KeyboardInterrupt):
        extract_features(dataset, dataclasses.replace(encoder, features=failing), tmp_path, config, False)
    report = extract_features(dataset, encoder, tmp_path, config, progress=False)
    assert (report.extracted, report.skipped) == (8, 4) and FeatureStore(tmp_path).ids == list(dataset.ids)


def test_checkpoint_and_size_reach_the_right_loader_argument(monkeypatch):
    from harmono.encoders import registry as encoders
    from harmono.features import extract

    seen = {}
    monkeypatch.setattr(extract, "load_encoder", lambda name, **kwargs: seen.update(kwargs) or _Stub())
    extract.load_encoder_for(ExtractConfig(encoder="openclip", checkpoint="ViT-B-32:openai", device="cpu"))
    assert seen == {"model": "ViT-B-32", "pretrained": "openai"}
    seen.clear()
    extract.load_encoder_for(ExtractConfig(encoder="openclip", checkpoint="/ckpt/a:b.pt", image_size=64))
    assert seen == {"pretrained": "/ckpt/a:b.pt", "image_size": 64}
    seen.clear()
    extract.load_encoder_for(ExtractConfig(encoder="vit", checkpoint="my/vit"))
    assert seen == {"source": "my/vit"}
    assert set(extract.CHECKPOINT_ARGUMENT) == set(encoders.encoder_names())


class _Stub:
    model = torch.nn.Linear(1, 1)


def test_probe_stores_must_hold_the_same_features(tmp_path):
    from harmono.analysis.probe import probe_stores
    from harmono.features import FeatureStoreWriter

    def store(name, image_size, rows=6):
        meta = {"encoder": "e", "weights": "w", "output": "pooled", "image_size": image_size,
                "dataset": name, "class_names": ["a", "b"]}  # fmt: skip
        with FeatureStoreWriter(tmp_path / name, 3, meta, dtype="float32") as writer:
            if rows:
                writer.append(np.random.default_rng(0).normal(size=(rows, 3)), list(map(str, range(rows))),
                              [i % 2 for i in range(rows)])  # fmt: skip
        return FeatureStore(tmp_path / name)

    train, test = store("train", 32), store("test", 32)
    assert 0 <= probe_stores(train, test).test_accuracy <= 1
    with pytest.raises(ValueError, match=r"differing in \{'image_size': \(32, 64\)\}"):
        probe_stores(train, store("other", 64))
    with pytest.raises(ValueError, match="expected a store with features, got 0 rows"):
        probe_stores(train, store("empty", 32, rows=0))


def test_linear_probe_checks_its_input():
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="expected >= 2 training and >= 1 test samples, got 1 and 5"):
        linear_probe(x[:1], y[:1], x, y, 2)
    with pytest.raises(ValueError, match=r"train_y must have shape \(5,\), got \(4,\)"):
        linear_probe(x, y[:4], x, y, 2)
    with pytest.raises(ValueError, match="test_y must hold integer class indices"):
        linear_probe(x, y, x, y.float(), 2)
    with pytest.raises(
        ValueError, match=r"train_y has class indices in \[0, 1\], expected values in \[0, 0\]"
    ):
        linear_probe(x, y, x, y, 1)


@needs_efficientnet
def test_cli_extracts_an_image_folder(tmp_path, capsys):
    pil = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(3):
            pil.fromarray(np.full((9, 9, 3), 40 * i, np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    argv = ["features", "extract", "--dataset", f"folder:{tmp_path / 'images'}", "--out", str(tmp_path / "s"),
            "--image-size", "32", "--no-progress", "--checkpoint", "random", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0 and "encoded 6 samples" in capsys.readouterr().out
    store = FeatureStore(tmp_path / "s")
    assert store.metadata["class_names"] == ["cat", "dog"] and store.metadata["weights"] == "random"
