import importlib.util
import json

import numpy as np
import pytest
import torch

from harmono.analysis.probe import linear_probe
from harmono.cli import main
from harmono.data import ImageSet
from harmono.features import FeatureStore
from harmono.features.encoders import load_encoder
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
    from harmono.features import hf_encoders

    with pytest.raises(ValueError, match="weights must be 'pretrained' or 'random'"):
        hf_encoders.hf_encoder("vit", weights="imagenet")
    with pytest.raises(ValueError, match="encoder must be one of"):
        hf_encoders.hf_encoder("resnet50")
    monkeypatch.setattr(hf_encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install transformers"):
        load_encoder("dinov2")
