"""Writing a feature store: whole shards at a time, crash-safe and resumable.

A shard is written to a temporary file, synced and renamed, and only then
entered into the manifest, which is itself replaced atomically. A writer
killed at any moment leaves a store whose manifest lists exactly the rows on
disk; ``FeatureStoreWriter`` reopened on it skips those ids, so a resumed
extraction has no duplicated and no missing sample. A lock file keeps a
second writer out of a store that one is writing. The layout is
``harmono.features.store_format``'s.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
import torch

from harmono.core.checks import require_positive_int
from harmono.core.io import TMP_SUFFIX, write_atomically
from harmono.features.store_format import (
    DTYPES,
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    MAX_ABS_VALUE,
    open_shard,
    read_manifest,
    shard_name,
    write_manifest,
)

DEFAULT_SHARD_ROWS = 65536
FLOAT16_MAX = float(np.finfo(np.float16).max)


class _HashingWriter:
    """A binary file wrapper that hashes what is written through it."""

    def __init__(self, handle: BinaryIO, digest: hashlib._Hash) -> None:
        self.handle, self.digest = handle, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


class FeatureStoreWriter:
    """Append features to a store, one whole shard at a time; resumes an interrupted store.

    Parameters
    ----------
    directory : str or Path
        The store. If it holds shards already, writing resumes: the
        metadata must match, and ``done_ids`` says which samples to skip.
    dim : int
        ``D``, features per sample.
    metadata : dict
        JSON-ready description (``encoder``, ``output``, ``dataset``,
        ``class_names``, ...), stored in the manifest and checked on resume
        (as JSON stores it: tuples compare equal to lists).
    dtype : {"float16", "float32"}
        Storage dtype.
    shard_rows : int
        Rows per shard (the last shard may be shorter).
    """

    def __init__(
        self,
        directory: str | Path,
        dim: int,
        metadata: dict,
        dtype: str = "float16",
        shard_rows: int = DEFAULT_SHARD_ROWS,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        dim, shard_rows = require_positive_int("dim", dim), require_positive_int("shard_rows", shard_rows)
        try:
            metadata = json.loads(json.dumps(metadata))
        except (TypeError, ValueError) as err:
            raise ValueError(f"expected JSON-ready metadata (str, int, float, list, dict): {err}") from None
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        for leftover in self.directory.glob("*" + TMP_SUFFIX):  # from a writer killed mid-write
            leftover.unlink()
        from harmono.core.version import __version__

        fresh = {
            "format": FORMAT_VERSION,
            "dim": dim,
            "dtype": dtype,
            "metadata": metadata,
            "harmono_version": __version__,
            "complete": False,
            "shards": [],
        }
        existing = read_manifest(self.directory) if (self.directory / MANIFEST).is_file() else None
        if existing and existing["shards"]:
            for key in ("dim", "dtype", "metadata"):
                if existing[key] != fresh[key]:
                    raise ValueError(
                        f"{self.directory} holds a store with {key} = {existing[key]!r}, "
                        f"not {fresh[key]!r}: use another directory to write different features"
                    )
            for entry in existing["shards"]:
                open_shard(self.directory, entry, dim, np.dtype(dtype), verify="shape")
            existing["complete"] = False
            self.manifest = existing
        else:  # new, or holding no shard yet: nothing to resume, any settings go
            self.manifest = fresh
        write_manifest(self.directory, self.manifest)
        self.dim, self.dtype, self.shard_rows = dim, np.dtype(dtype), shard_rows
        self.done_ids = {i for shard in self.manifest["shards"] for i in shard["ids"]}
        self._features: list[np.ndarray] = []
        self._ids: list[str] = []
        self._labels: list[int] = []

    def _acquire_lock(self) -> TextIO:
        handle = (self.directory / LOCK).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(
                f"{self.directory} is being written by another process; wait for it or use another directory"
            ) from None
        return handle

    def _release_lock(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def remaining(self, ids: Sequence[str]) -> list[int]:
        """Positions in ``ids`` of the samples not stored yet."""
        return [i for i, sample_id in enumerate(ids) if sample_id not in self.done_ids]

    def append(self, features: torch.Tensor | np.ndarray, ids: Sequence[str], labels: Sequence[int]) -> None:
        """Buffer a batch ``features (B, D)`` with its ids and labels; write every full shard."""
        features = (
            features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        )
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must have shape (B, {self.dim}), got {features.shape}")
        ids = [str(i) for i in ids]
        if not len(ids) == len(labels) == len(features):
            raise ValueError(
                f"expected one id and one label per row: {len(features)} rows, "
                f"{len(ids)} ids, {len(labels)} labels"
            )
        if not np.isfinite(features).all():
            raise ValueError("features contain NaN or inf; nothing was written")
        largest = float(np.abs(features).max()) if features.size else 0.0
        if largest > MAX_ABS_VALUE:
            raise ValueError(
                f"expected features within +-{MAX_ABS_VALUE:g}, got a largest magnitude of {largest:g}; "
                "nothing was written"
            )
        with np.errstate(over="ignore"):  # overflow to inf is reported below
            stored_features = features.astype(self.dtype)
        if not np.isfinite(stored_features).all():
            raise ValueError(
                f"expected features within +-{FLOAT16_MAX:g} for a float16 store, got a largest magnitude "
                f"of {largest:g}; nothing was written (use dtype='float32')"
            )
        if len(set(ids)) < len(ids):
            raise ValueError("ids repeat within the batch; every sample needs its own id")
        stored = self.done_ids.intersection(ids)
        if stored:
            raise ValueError(
                f"{len(stored)} id(s) are stored already, e.g. {sorted(stored)[:3]}; "
                "skip them with remaining()"
            )
        self._features.append(stored_features)
        self._ids.extend(ids)
        self._labels.extend(int(label) for label in labels)
        self.done_ids.update(ids)
        while len(self._ids) >= self.shard_rows:
            self._write_shard(self.shard_rows)

    def _write_shard(self, rows: int) -> None:
        block = np.concatenate(self._features)
        shard, rest = block[:rows], block[rows:]
        index = len(self.manifest["shards"])
        path = self.directory / shard_name(index)
        digest = hashlib.sha256()
        write_atomically(path, lambda handle: np.save(_HashingWriter(handle, digest), shard))
        self.manifest["shards"].append(
            {
                "file": path.name,
                "rows": rows,
                "sha256": digest.hexdigest(),
                "ids": self._ids[:rows],
                "labels": self._labels[:rows],
            }
        )
        write_manifest(self.directory, self.manifest)
        self._features = [rest] if len(rest) else []
        self._ids, self._labels = self._ids[rows:], self._labels[rows:]

    def close(self) -> None:
        """Write the last, partial shard, mark the store complete and release the lock."""
        try:
            if self._ids:
                self._write_shard(len(self._ids))
            self.manifest["complete"] = True
            write_manifest(self.directory, self.manifest)
        finally:
            self._release_lock()

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the buffered rows are dropped; the store resumes from its last shard
            self._release_lock()
