"""Extract encoder features of an image dataset into a feature store, resumably."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from harmono import _checks
from harmono.data.images import ImageSet
from harmono.features.encoders import Encoder
from harmono.features.store import DEFAULT_SHARD_ROWS, DTYPES, FeatureStore, FeatureStoreWriter

logger = logging.getLogger("harmono")


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of a feature extraction."""

    encoder: str = "efficientnet-lite0"
    """Encoder name (see harmono.features.encoders.ENCODERS)."""
    dataset: str = "fashion-mnist"
    """Dataset name, or folder:<path> for an image folder."""
    split: str = "train"
    """Dataset split (train/test for Fashion-MNIST, all for the others)."""
    image_size: int = 96
    """Side the images are resized to."""
    batch_size: int = 256
    """Images per forward pass."""
    limit: int = 0
    """Extract only the first this many samples (0: all)."""
    dtype: str = "float16"
    """Storage dtype: float16 or float32."""
    shard_rows: int = DEFAULT_SHARD_ROWS
    """Rows per shard file."""

    def __post_init__(self) -> None:
        _checks.require_at_least(self, ("image_size", "batch_size", "shard_rows"), 1)
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0: all samples), got {self.limit}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class ExtractReport:
    """What one (possibly resumed) extraction did."""

    store: Path
    """The store directory."""
    extracted: int
    """Samples encoded by this call."""
    skipped: int
    """Samples found in the store already (a resumed run)."""
    seconds: float
    """Wall time of the encoding."""


def extract_features(
    dataset: ImageSet,
    encoder: Encoder,
    out: str | Path,
    config: ExtractConfig = ExtractConfig(),
    progress: bool = True,
) -> ExtractReport:
    """Encode ``dataset`` (its first ``config.limit`` samples) into the store ``out``.

    Samples whose id is in the store already are skipped, so a killed run
    continues where its last shard ended.
    """
    metadata = {
        "encoder": encoder.name,
        "weights": encoder.weights,
        "output": encoder.output,
        "image_size": encoder.image_size,
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
    }
    writer = FeatureStoreWriter(
        out, encoder.feature_dim, metadata, dtype=config.dtype, shard_rows=config.shard_rows
    )
    count = min(config.limit, len(dataset)) if config.limit else len(dataset)
    todo = writer.remaining(dataset.ids[:count])
    logger.info("%s: %d samples to encode, %d stored already", dataset.name, len(todo), count - len(todo))
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"{encoder.name} on {dataset.name}", unit="img", disable=not progress)
    for begin in range(0, len(todo), config.batch_size):
        chunk = todo[begin : begin + config.batch_size]
        features = encoder.encode([dataset.image(i) for i in chunk])
        writer.append(features, [dataset.ids[i] for i in chunk], dataset.labels[chunk].tolist())
        bar.update(len(chunk))
    bar.close()
    writer.close()
    return ExtractReport(Path(out), len(todo), count - len(todo), time.perf_counter() - start)


def store_summary(store: FeatureStore) -> dict:
    """JSON-ready description of a store, for ``harmono features info``."""
    return {
        "rows": len(store),
        "dim": store.dim,
        "dtype": str(store.dtype),
        "shards": len(store.shards),
        "complete": store.complete,
        "harmono_version": store.manifest["harmono_version"],
        **store.metadata,
    }
