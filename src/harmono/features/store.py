"""A feature store: contiguous memory-mapped shards plus a JSON manifest.

Layout of a store directory::

    manifest.json        what the features are, and one entry per finished shard
    shard_00000.npy      (rows, D) float16 or float32, a plain .npy file
    shard_00001.npy
    ...

The manifest holds the metadata (encoder, output, dim, dtype, dataset, class
names, harmono version) and, per shard, its file, row count, SHA-256, and the
ids and labels of its rows. Training reads shards sequentially, the access
pattern disks and page caches serve fastest (saev's lesson: SAE training on
stored activations is disk-bound).

Writing is crash-safe: a shard is written to a temporary file, synced and
renamed, and only then entered into the manifest, which is itself replaced
atomically. A writer killed at any moment leaves a store whose manifest lists
exactly the rows on disk; ``FeatureStoreWriter`` reopened on it skips those
ids, so a resumed extraction has no duplicated and no missing sample. A lock
file keeps a second writer out of a store that one is writing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmono.core.checks import require_positive_int
from harmono.core.io import TMP_SUFFIX, write_atomically, write_json_atomically

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT_VERSION = 1
DTYPES = ("float16", "float32")
DEFAULT_SHARD_ROWS = 65536
CHECKSUM_CHUNK_BYTES = 16 * 2**20
FLOAT16_MAX = float(np.finfo(np.float16).max)


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}.npy"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHECKSUM_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingWriter:
    """A binary file wrapper that hashes what is written through it."""

    def __init__(self, handle, digest) -> None:
        self.handle, self.digest = handle, digest

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _open_shard(directory: Path, entry: dict, dim: int, dtype: np.dtype, verify: str) -> np.ndarray:
    """Memory-map one shard listed in the manifest after checking it (see ``FeatureStore``)."""
    path = directory / entry["file"]
    if not len(entry["ids"]) == len(entry["labels"]) == entry["rows"]:
        raise ValueError(
            f"{directory / MANIFEST}: expected {entry['rows']} ids and labels for {entry['file']}, "
            f"got {len(entry['ids'])} ids and {len(entry['labels'])} labels; the manifest is damaged"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} is listed in the manifest but missing; the store is damaged")
    if verify == "checksum" and _sha256(path) != entry["sha256"]:
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


def _write_manifest(directory: Path, manifest: dict) -> None:
    write_json_atomically(directory / MANIFEST, manifest)


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a feature store: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the store is damaged") from err
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: expected store format {FORMAT_VERSION}, got {manifest.get('format')!r}")
    return manifest


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
    ):
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
        existing = _read_manifest(self.directory) if (self.directory / MANIFEST).is_file() else None
        if existing and existing["shards"]:
            for key in ("dim", "dtype", "metadata"):
                if existing[key] != fresh[key]:
                    raise ValueError(
                        f"{self.directory} holds a store with {key} = {existing[key]!r}, "
                        f"not {fresh[key]!r}: use another directory to write different features"
                    )
            for entry in existing["shards"]:
                _open_shard(self.directory, entry, dim, np.dtype(dtype), verify="shape")
            existing["complete"] = False
            self.manifest = existing
        else:  # new, or holding no shard yet: nothing to resume, any settings go
            self.manifest = fresh
        _write_manifest(self.directory, self.manifest)
        self.dim, self.dtype, self.shard_rows = dim, np.dtype(dtype), shard_rows
        self.done_ids = {i for shard in self.manifest["shards"] for i in shard["ids"]}
        self._features: list[np.ndarray] = []
        self._ids: list[str] = []
        self._labels: list[int] = []

    def _acquire_lock(self):
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
        with np.errstate(over="ignore"):  # overflow to inf is reported below
            stored_features = features.astype(self.dtype)
        if not np.isfinite(stored_features).all():
            raise ValueError(
                f"expected features within +-{FLOAT16_MAX:g} for a float16 store, got a largest magnitude "
                f"of {np.abs(features).max():g}; nothing was written (use dtype='float32')"
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
        path = self.directory / _shard_name(index)
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
        _write_manifest(self.directory, self.manifest)
        self._features = [rest] if len(rest) else []
        self._ids, self._labels = self._ids[rows:], self._labels[rows:]

    def close(self) -> None:
        """Write the last, partial shard, mark the store complete and release the lock."""
        try:
            if self._ids:
                self._write_shard(len(self._ids))
            self.manifest["complete"] = True
            _write_manifest(self.directory, self.manifest)
        finally:
            self._release_lock()

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # the buffered rows are dropped; the store resumes from its last shard
            self._release_lock()


@dataclass(frozen=True)
class Batch:
    """A batch read from a store.

    Attributes
    ----------
    features : torch.Tensor
        ``(B, D)`` float32, or the requested dtype.
    labels : torch.Tensor
        ``(B,)`` int64.
    indices : torch.Tensor
        ``(B,)`` int64 row numbers in the store.
    """

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


class FeatureStore:
    """Read a store: sequential or shuffled batches, random access, torch and distributed views.

    Opening checks that every shard listed in the manifest exists with the
    expected shape and dtype; ``verify="checksum"`` (the default) also
    compares each shard's SHA-256, which catches any corruption but reads the
    whole store once. ``verify="shape"`` only reads the headers.

    Parameters
    ----------
    directory : str or Path
    verify : {"checksum", "shape"}
    """

    def __init__(self, directory: str | Path, verify: str = "checksum"):
        if verify not in ("checksum", "shape"):
            raise ValueError(f"verify must be 'checksum' or 'shape', got {verify!r}")
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        self.dim = int(self.manifest["dim"])
        self.dtype = np.dtype(self.manifest["dtype"])
        self.metadata = self.manifest["metadata"]
        entries = self.manifest["shards"]
        self.shards = [_open_shard(self.directory, entry, self.dim, self.dtype, verify) for entry in entries]
        rows = [entry["rows"] for entry in self.manifest["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self.labels = np.asarray(
            [label for s in self.manifest["shards"] for label in s["labels"]], dtype=np.int64
        )
        self.ids = [i for s in self.manifest["shards"] for i in s["ids"]]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def complete(self) -> bool:
        """Whether the writer finished (a resumed extraction may still be missing samples)."""
        return bool(self.manifest["complete"])

    def view(self, start: int = 0, stop: int | None = None) -> StoreView:
        """Rows ``[start, stop)`` of the store."""
        return StoreView(self, start, len(self) if stop is None else stop)

    def rank_view(self, rank: int, world_size: int, equal: bool = True) -> StoreView:
        """The rows one of ``world_size`` ranks reads: contiguous and disjoint.

        With ``equal`` (the default) every rank gets ``len(self) // world_size``
        rows and the last ``len(self) % world_size`` rows are left out, so
        that ranks running collectives per batch see the same number of
        batches. Without it the parts differ by at most one row and together
        hold every row.
        """
        world_size = require_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        n = len(self)
        if equal:
            return self.view(rank * (n // world_size), (rank + 1) * (n // world_size))
        return self.view(rank * n // world_size, (rank + 1) * n // world_size)

    def rows(self, start: int, stop: int, dtype: np.dtype | str | None = None) -> np.ndarray:
        """``(stop - start, D)`` stored rows, copied out of the shards (converted to ``dtype`` on the way)."""
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"expected rows with 0 <= start <= stop <= {len(self)}, got [{start}, {stop})")
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        out = np.empty((stop - start, self.dim), dtype=dtype)
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        filled = 0
        while start < stop:
            local = start - int(self.offsets[shard])
            take = min(stop - start, self.shards[shard].shape[0] - local)
            out[filled : filled + take] = self.shards[shard][local : local + take]
            start, filled, shard = start + take, filled + take, shard + 1
        return out

    def take(self, indices: np.ndarray, dtype: np.dtype | str | None = None) -> np.ndarray:
        """``(len(indices), D)`` rows at arbitrary ``indices`` (e.g. a shuffled batch's), in their order."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and not (0 <= indices.min() and indices.max() < len(self)):
            found = f"{indices.min()} .. {indices.max()}"
            raise ValueError(f"expected row indices in [0, {len(self)}), got {found}")
        out = np.empty((len(indices), self.dim), dtype=self.dtype if dtype is None else np.dtype(dtype))
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for shard in np.unique(shard_of):
            chosen = np.flatnonzero(shard_of == shard)
            out[chosen] = self.shards[shard][indices[chosen] - self.offsets[shard]]
        return out

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Row ``index``: ``(features (D,) float32, label)``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} out of range for a store of {len(self)} rows")
        index %= len(self)
        return torch.from_numpy(self.rows(index, index + 1, np.float32)[0]), int(self.labels[index])


class StoreView(torch.utils.data.Dataset):
    """Rows ``[start, stop)`` of a ``FeatureStore``; a map-style ``torch.utils.data.Dataset``.

    Items are ``(features (D,) float32, label)``.
    """

    def __init__(self, store: FeatureStore, start: int, stop: int):
        if not 0 <= start <= stop <= len(store):
            raise ValueError(f"expected 0 <= start <= stop <= {len(store)}, got [{start}, {stop})")
        self.store, self.start, self.stop = store, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for a view of {len(self)} rows")
        return self.store[self.start + index]

    def _batch(
        self, features: np.ndarray, indices: np.ndarray, normalize: bool, dtype: torch.dtype | None
    ) -> Batch:
        tensor = torch.from_numpy(features)  # torch converts float16 far faster than numpy
        target = tensor.dtype if dtype is None else dtype
        if normalize:
            tensor = torch.nn.functional.normalize(tensor.float(), dim=1)
        tensor = tensor.to(target)
        return Batch(tensor, torch.from_numpy(self.store.labels[indices]), torch.from_numpy(indices))

    def batches(
        self, batch_size: int, normalize: bool = False, dtype: torch.dtype | None = torch.float32
    ) -> Iterator[Batch]:
        """Sequential batches over the view (the last may be shorter).

        ``normalize`` L2-normalises each row at read time (in float32); the
        stored data is untouched. ``dtype=None`` keeps the stored dtype (the
        fastest read: no conversion on the CPU).
        """
        batch_size = require_positive_int("batch_size", batch_size)
        for begin in range(self.start, self.stop, batch_size):
            end = min(begin + batch_size, self.stop)
            yield self._batch(self.store.rows(begin, end), np.arange(begin, end), normalize, dtype)

    def shuffled_batches(
        self,
        batch_size: int,
        seed: int,
        buffer_rows: int = 2**16,
        block_rows: int = 4096,
        normalize: bool = False,
        dtype: torch.dtype | None = torch.float32,
    ) -> Iterator[Batch]:
        """Every row once, in a seeded shuffled order, read in contiguous blocks through a mixing buffer.

        Blocks of ``block_rows`` consecutive rows are read in random order
        into a buffer of about ``buffer_rows``; the buffer is permuted and
        emitted in batches, the remainder mixing with the next blocks. The
        same ``seed`` gives the same batches. ``normalize`` and ``dtype`` as
        for ``batches``.
        """
        batch_size = require_positive_int("batch_size", batch_size)
        buffer_rows = require_positive_int("buffer_rows", buffer_rows)
        block_rows = require_positive_int("block_rows", block_rows)
        rng = np.random.default_rng(seed)
        starts = np.arange(self.start, self.stop, block_rows)
        rng.shuffle(starts)
        features: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        held = 0
        for position, begin in enumerate(starts):
            end = min(int(begin) + block_rows, self.stop)
            features.append(self.store.rows(int(begin), end))
            indices.append(np.arange(begin, end))
            held += end - int(begin)
            last = position == len(starts) - 1
            if held < buffer_rows and not last:
                continue
            pool, pool_indices = np.concatenate(features), np.concatenate(indices)
            order = rng.permutation(len(pool))
            emit = len(pool) if last else (len(pool) // batch_size) * batch_size
            for begin_batch in range(0, emit, batch_size):
                chosen = order[begin_batch : min(begin_batch + batch_size, emit)]
                yield self._batch(pool[chosen], pool_indices[chosen], normalize, dtype)
            features, indices = [pool[order[emit:]]], [pool_indices[order[emit:]]]
            held = len(indices[0])
