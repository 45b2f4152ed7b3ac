"""An explicit HARMONO_FASHION_MNIST that lacks the data is an error, never a fall-back to the system copy."""

import hashlib

import pytest

from fake_data import fake_fashion_mnist
from harmono.data import images as images_module
from harmono.data import load_image_dataset


def hashes(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A complete Fashion-MNIST where the Debian package puts it, which must not be used instead."""
    folder = fake_fashion_mnist(tmp_path / "system")
    monkeypatch.setattr(images_module, "FASHION_MNIST_DEBIAN_DIR", folder)
    return folder


def test_a_missing_path_names_the_variable_and_the_path(tmp_path, monkeypatch, system_copy):
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv(images_module.FASHION_MNIST_ENV, str(missing))
    before = hashes(system_copy)
    with pytest.raises(FileNotFoundError) as err:
        load_image_dataset("fashion-mnist", "test")
    assert f"HARMONO_FASHION_MNIST={missing} names no folder" in str(err.value)
    assert hashes(system_copy) == before and not missing.exists()


def test_a_folder_without_the_files_names_the_missing_file(tmp_path, monkeypatch, system_copy):
    partial = fake_fashion_mnist(tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(images_module.FASHION_MNIST_ENV, str(partial))
    before = hashes(partial)
    with pytest.raises(FileNotFoundError) as err:
        load_image_dataset("fashion-mnist", "train")
    message = str(err.value)
    assert f"HARMONO_FASHION_MNIST={partial}" in message and "lacks t10k-labels-idx1-ubyte.gz" in message
    assert hashes(partial) == before


def test_unset_or_empty_still_reads_the_system_copy(monkeypatch, system_copy):
    monkeypatch.setenv(images_module.FASHION_MNIST_ENV, "")
    assert len(load_image_dataset("fashion-mnist", "test")) == 5
    monkeypatch.delenv(images_module.FASHION_MNIST_ENV)
    assert len(load_image_dataset("fashion-mnist", "test")) == 5
