"""Explicit, opt-in download of Fashion-MNIST for machines without the Debian package.

harmono never downloads on its own: ``harmono data download fashion-mnist
--out DIR`` (or ``download_fashion_mnist(DIR)``) fetches the four IDX files
from the dataset's official mirror, checks the SHA-256 of their decompressed
contents, and then ``root=DIR`` or ``HARMONO_FASHION_MNIST=DIR`` points the
loader at them. The checksums are those of the files in the Debian package
``dataset-fashion-mnist``, so both sources give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from harmono.data.images import FASHION_MNIST_FILES

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Official mirror named in the dataset's README."""
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""SHA-256 of each file's decompressed contents."""


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str) -> bool:
    try:
        return _content_sha256(path) == expected
    except (OSError, EOFError, gzip.BadGzipFile):
        return False


def download_fashion_mnist(
    root: str | Path, base_url: str = FASHION_MNIST_URL, progress: bool = True
) -> Path:
    """Fetch the four Fashion-MNIST IDX files into ``root`` and verify them.

    Files already in ``root`` with the right contents are kept. Each file is
    written under a temporary name and renamed only once its checksum holds,
    so an interrupted or corrupted download leaves no file that the loader
    would read.

    Parameters
    ----------
    root : str or Path
        Folder to write into (created if needed).
    base_url : str
        Mirror to fetch from (``base_url + file name``).
    progress : bool
        Show a progress bar per file.

    Returns
    -------
    Path
        ``root``, ready for ``load_image_dataset("fashion-mnist", root=root)``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    for name in names:
        target, expected = root / name, FASHION_MNIST_SHA256[name]
        if target.is_file() and _verified(target, expected):
            continue
        partial = root / f".{name}.part"
        url = base_url + name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        bar.update(len(block))
            if not _verified(partial, expected):
                raise ValueError(
                    f"{url}: expected decompressed contents with SHA-256 {expected}, got other bytes; "
                    "nothing was written"
                )
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
    return root
