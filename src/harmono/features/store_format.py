"""The on-disk format of a feature store: layout, manifest, checksums and the checks of each shard.

Layout of a store directory::

    manifest.json        what the features are, and one entry per finished shard
    shard_00000.npy      (rows, D) float16 or float32, a plain .npy file
    shard_00001.npy
    ...

The manifest holds the metadata (encoder, output, dim, dtype, dataset, class
names, harmono version) and, per shard, its file, row count, SHA-256, and the
ids and labels of its rows. ``harmono.features.store_writer`` writes stores,
``harmono.features.store`` reads them; both open shards through
:func:`open_shard`, which checks them against the manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harmono.core.io import read_json, write_json_atomically

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT_VERSION = 1
MANIFEST_KEYS = ("format", "dim", "dtype", "metadata", "complete", "shards")
"""The keys of a manifest."""
SHARD_KEYS = {"file", "rows", "sha256", "ids", "labels"}
"""The keys of a manifest's entry of one shard."""
DTYPES = ("float16", "float32")
CHECKSUM_CHUNK_BYTES = 16 * 2**20
MAX_ABS_VALUE = 1e30
"""The largest feature magnitude a store holds (float16 stores: their finite range, +-65504); larger
values, NaN and inf in a shard are corruption, refused when read and when written."""


def value_limit(dtype: np.dtype) -> float:
    """The largest magnitude a feature of a store of ``dtype`` may have: ``MAX_ABS_VALUE`` or less."""
    return min(MAX_ABS_VALUE, float(np.finfo(dtype).max))


def shard_name(index: int) -> str:
    """The file name of shard ``index``."""
    return f"shard_{index:05d}.npy"


def sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, as hex, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHECKSUM_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def open_shard(directory: Path, entry: dict, dim: int, dtype: np.dtype, verify: str) -> np.ndarray:
    """Memory-map one shard listed in the manifest after checking it.

    Parameters
    ----------
    directory : Path
        The store.
    entry : dict
        The shard's manifest entry (``file``, ``rows``, ``sha256``, ``ids``, ``labels``).
    dim : int
        ``D``, features per row.
    dtype : numpy.dtype
        The store's dtype.
    verify : {"checksum", "shape"}
        ``"checksum"`` also compares the file's SHA-256 with the manifest's.

    Returns
    -------
    numpy.ndarray
        ``(rows, D)``, read-only memory map.
    """
    path = directory / entry["file"]
    if not len(entry["ids"]) == len(entry["labels"]) == entry["rows"]:
        raise ValueError(
            f"{directory / MANIFEST}: expected {entry['rows']} ids and labels for {entry['file']}, "
            f"got {len(entry['ids'])} ids and {len(entry['labels'])} labels; the manifest is damaged"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in the manifest but missing; the store is damaged")
    if verify == "checksum" and sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its checksum: the shard is corrupted or truncated")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, EOFError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable .npy shard ({err}); it is truncated or corrupted"
        ) from err
    if array.shape != (entry["rows"], dim) or array.dtype != dtype:
        raise ValueError(
            f"{path}: expected {entry['rows']} x {dim} {dtype}, "
            f"got {array.shape} {array.dtype}; the shard is truncated or corrupted"
        )
    return array


def write_manifest(directory: Path, manifest: dict) -> None:
    """Replace the manifest of ``directory`` atomically."""
    write_json_atomically(directory / MANIFEST, manifest)


def read_manifest(directory: Path) -> dict:
    """The manifest of the store ``directory``, checked to be readable and of this format."""
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a feature store: {MANIFEST} is missing")
    manifest = read_json(path, "a feature store manifest", MANIFEST_KEYS)
    if manifest["format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: expected store format {FORMAT_VERSION}, got {manifest['format']!r}")
    shards = manifest["shards"]
    if not isinstance(shards, list) or not all(
        isinstance(e, dict) and SHARD_KEYS <= e.keys() for e in shards
    ):
        raise ValueError(
            f"{path}: expected shard entries with the keys {sorted(SHARD_KEYS)}, got {str(shards)[:80]}"
        )
    return manifest
