"""Reading a feature store: sequential or shuffled batches, random access, torch and distributed views.

A store is a directory of contiguous memory-mapped shards plus a JSON
manifest (the layout is ``harmono.features.store_format``'s; stores are
written by ``harmono.features.store_writer.FeatureStoreWriter``). Training
reads shards sequentially, the access pattern disks and page caches serve
fastest (saev's lesson: SAE training on stored activations is disk-bound).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmono.core.checks import require_positive_int
from harmono.features.store_format import open_shard, read_manifest, value_limit


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

    def __init__(self, directory: str | Path, verify: str = "checksum") -> None:
        if verify not in ("checksum", "shape"):
            raise ValueError(f"verify must be 'checksum' or 'shape', got {verify!r}")
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self.dim = int(self.manifest["dim"])
        self.dtype = np.dtype(self.manifest["dtype"])
        self.metadata = self.manifest["metadata"]
        entries = self.manifest["shards"]
        self.shards = [open_shard(self.directory, entry, self.dim, self.dtype, verify) for entry in entries]
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

    def check_values(self, features: torch.Tensor, indices: np.ndarray) -> None:
        """Raise if rows read from the store hold NaN, inf or a magnitude beyond ``value_limit``.

        One ``aminmax`` pass over the batch; only when it fails are the rows searched, to name the
        shard file and row of the first bad value. A shard overwritten in place with the same size
        passes ``verify="shape"``; this catches it where its values are absurd.

        Parameters
        ----------
        features : torch.Tensor
            ``(B, D)`` rows as stored (before any normalisation).
        indices : numpy.ndarray
            ``(B,)`` their row numbers in the store.

        Raises
        ------
        ValueError
            Naming the shard file, the row and the value.
        """
        if features.numel() == 0:
            return
        limit = value_limit(self.dtype)
        low, high = (float(v) for v in torch.aminmax(features))
        if -limit <= low and high <= limit:
            return
        bad = ~(features.float().abs() <= limit)
        position, column = (int(i) for i in bad.nonzero()[0])
        row = int(indices[position])
        shard = int(np.searchsorted(self.offsets, row, side="right")) - 1
        path = self.directory / self.manifest["shards"][shard]["file"]
        raise ValueError(
            f"{path}: row {row - int(self.offsets[shard])} "
            f"(store row {row}) holds {float(features[position, column]):g} in column {column}, beyond the "
            f"+-{limit:g} a {self.dtype} store holds; the shard is corrupted"
        )

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

    def __init__(self, store: FeatureStore, start: int, stop: int) -> None:
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
        self.store.check_values(tensor, indices)
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
        fastest read: no conversion on the CPU). Every batch passes
        ``FeatureStore.check_values`` first: NaN, inf or an absurd magnitude
        in a shard raises ``ValueError`` naming the shard file.
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
        same ``seed`` gives the same batches. ``normalize``, ``dtype`` and the
        check of the values as for ``batches``.
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
