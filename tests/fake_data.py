"""A fake Fashion-MNIST folder of IDX files, for tests that must not need the real data."""

import gzip

import numpy as np

from harmono.data import images as images_module


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(folder, n_train=12, n_test=5, truncate=None):
    """Random 28x28 images with labels 0, 1, ..., 9, 0, ... in ``folder`` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        image_file, label_file = images_module.FASHION_MNIST_FILES[split]
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        write_idx(folder / image_file, images, 2051)
        write_idx(folder / label_file, labels, 2049)
    if truncate:
        data = gzip.open(folder / truncate).read()
        with gzip.open(folder / truncate, "wb") as handle:
            handle.write(data[:-10])
    return folder
