"""Feature store read throughput vs reading the same .npy bytes directly.

Builds a store of ``--gib`` GiB (float16 rows of ``--dim`` features, shards
of 65536 rows) in a temporary directory, then, in interleaved rounds:

- ``raw``: ``np.load(mmap_mode="r")`` of each shard file and a copy of
  every ``--batch`` rows into a float16 array: the floor of any reader;
- ``sequential``: ``FeatureStore.view().batches(batch, dtype=None)``:
  float16 tensors, as stored;
- ``sequential_float32``: the same, converted to float32 tensors;
- ``shuffled``: ``shuffled_batches(batch, seed)`` with a 65536-row mixing
  buffer read in blocks of 4096 rows, float32 tensors.

Each time ratio is the median over rounds of raw / variant measured in the
same round (a throughput ratio; higher is faster). Target: sequential >= 0.8x
raw. The store lives in the page cache after the first round, as a store
that fits in memory would in training.

Usage::

    python benchmarks/feature_store.py            # 1 GiB, D = 1024
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import device_name, interleaved_seconds, write_json
from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.report.text_table import format_table

TARGET = 0.8


def build_store(directory: Path, rows: int, dim: int, shard_rows: int = 65536) -> None:
    """A float16 store of ``rows`` random rows."""
    rng = np.random.default_rng(0)
    with FeatureStoreWriter(
        directory, dim, {"encoder": "benchmark"}, dtype="float16", shard_rows=shard_rows
    ) as w:
        for start in range(0, rows, shard_rows):
            n = min(shard_rows, rows - start)
            ids = [f"r:{i}" for i in range(start, start + n)]
            w.append(rng.standard_normal((n, dim), dtype=np.float32), ids, np.zeros(n, dtype=np.int64))


def read_raw(paths: list[Path], batch: int) -> int:
    """Copy every shard, ``batch`` rows at a time, out of ``np.load(mmap_mode="r")``."""
    total = 0
    for path in paths:
        array = np.load(path, mmap_mode="r")
        for start in range(0, array.shape[0], batch):
            total += np.array(array[start : start + batch]).shape[0]
    return total


def read_sequential(store: FeatureStore, batch: int, dtype: torch.dtype | None) -> int:
    return sum(b.features.shape[0] for b in store.view().batches(batch, dtype=dtype))


def read_shuffled(store: FeatureStore, batch: int) -> int:
    return sum(b.features.shape[0] for b in store.view().shuffled_batches(batch, seed=0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=1.0, help="store size in GiB")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8192, help="rows per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    args = parser.parse_args()

    rows = int(args.gib * 2**30 // (2 * args.dim))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "store"
        build_store(directory, rows, args.dim)
        store = FeatureStore(directory, verify="shape")
        paths = [directory / s["file"] for s in store.manifest["shards"]]
        seconds = interleaved_seconds(
            {
                "raw": lambda: read_raw(paths, args.batch),
                "sequential": lambda: read_sequential(store, args.batch, None),
                "sequential_float32": lambda: read_sequential(store, args.batch, torch.float32),
                "shuffled": lambda: read_shuffled(store, args.batch),
            },
            args.repeats,
            "cpu",
        )
    gib = rows * args.dim * 2 / 2**30
    table = []
    for name, times in seconds.items():
        median = statistics.median(times)
        ratio = statistics.median(r / t for r, t in zip(seconds["raw"], times, strict=True))
        table.append({"variant": name, "median_s": median, "gib_per_s": gib / median, "vs_raw": ratio})
    record = {
        "benchmark": "feature_store",
        "device": device_name("cpu"),
        "rows": rows,
        "dim": args.dim,
        "gib": gib,
        "batch": args.batch,
        "repeats": args.repeats,
        "target_sequential_vs_raw": TARGET,
        "met": table[1]["vs_raw"] >= TARGET,
        "rows_table": table,
        "seconds": seconds,
    }
    print(f"{rows} rows x {args.dim} float16 ({gib:.2f} GiB), batches of {args.batch}, {record['device']}")
    print(
        format_table(
            ["variant", "median time (s)", "GiB/s (stored bytes)", "throughput / raw"],
            [
                (r["variant"], f"{r['median_s']:.2f}", f"{r['gib_per_s']:.2f}", f"{r['vs_raw']:.2f}x")
                for r in table
            ],
            markdown=True,
        )
    )
    print(f"target: sequential >= {TARGET}x raw ({'met' if record['met'] else 'MISSED'})")
    print(f"wrote {write_json(record, args.json, 'feature_store_cpu.json')}")


if __name__ == "__main__":
    main()
