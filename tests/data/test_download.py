"""The explicit Fashion-MNIST download, served from a local file:// mirror (no network)."""

import gzip
import hashlib

import numpy as np
import pytest

from fake_data import fake_fashion_mnist
from harmono.cli import main
from harmono.data import download as download_module
from harmono.data import load_image_dataset
from harmono.data.images import FASHION_MNIST_DEBIAN_DIR


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A fake Fashion-MNIST mirror whose contents the module's checksums accept."""
    folder = fake_fashion_mnist(tmp_path / "mirror")
    sums = {f.name: hashlib.sha256(gzip.open(f).read()).hexdigest() for f in folder.glob("*.gz")}
    monkeypatch.setattr(download_module, "FASHION_MNIST_SHA256", sums)
    return folder


def test_download_verifies_and_loads(mirror, tmp_path):
    root = download_module.download_fashion_mnist(tmp_path / "data", mirror.as_uri() + "/", progress=False)
    fetched, original = (load_image_dataset("fashion-mnist", "train", root=r) for r in (root, mirror))
    np.testing.assert_array_equal(fetched.images, original.images)
    np.testing.assert_array_equal(fetched.labels, original.labels)
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in mirror.iterdir())


def test_verified_files_are_kept_and_bad_ones_replaced(mirror, tmp_path):
    root = tmp_path / "data"
    download_module.download_fashion_mnist(root, mirror.as_uri() + "/", progress=False)
    kept = root / "train-labels-idx1-ubyte.gz"
    stamp = kept.stat().st_mtime_ns
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    download_module.download_fashion_mnist(root, mirror.as_uri() + "/", progress=False)
    assert kept.stat().st_mtime_ns == stamp
    assert load_image_dataset("fashion-mnist", "test", root=root).images.shape == (5, 28, 28)


def test_corrupted_download_leaves_no_file(mirror, tmp_path):
    fake_fashion_mnist(mirror, truncate="train-images-idx3-ubyte.gz")
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="expected decompressed contents with SHA-256"):
        download_module.download_fashion_mnist(root, mirror.as_uri() + "/", progress=False)
    assert not (root / "train-images-idx3-ubyte.gz").exists()
    assert not list(root.glob(".*part"))


def test_cli_download(mirror, tmp_path, capsys):
    out = str(tmp_path / "d")
    argv = [
        "data",
        "download",
        "fashion-mnist",
        "--out",
        out,
        "--mirror",
        mirror.as_uri() + "/",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "HARMONO_FASHION_MNIST=" in capsys.readouterr().out
    assert len(load_image_dataset("fashion-mnist", "train", root=tmp_path / "d")) == 12


def test_checksums_match_the_debian_package():
    real = FASHION_MNIST_DEBIAN_DIR
    if not (real / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the Debian package dataset-fashion-mnist is not installed")
    for name, expected in download_module.FASHION_MNIST_SHA256.items():
        assert hashlib.sha256(gzip.open(real / name).read()).hexdigest() == expected
