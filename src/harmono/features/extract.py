"""Extract encoder features of an image dataset into a feature store, resumably."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from harmono.core import checks
from harmono.core.device import resolve_device
from harmono.data.images import ImageSet, load_image_dataset
from harmono.encoders import Encoder, load_encoder
from harmono.features.store import FeatureStore
from harmono.features.store_format import DTYPES
from harmono.features.store_writer import DEFAULT_SHARD_ROWS, FeatureStoreWriter

logger = logging.getLogger("harmono")


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of a feature extraction."""

    encoder: str = "efficientnet-lite0"
    """Encoder name (see harmono.encoders.registry.ENCODERS)."""
    dataset: str = "fashion-mnist"
    """Dataset name, or folder:<path> for an image folder."""
    split: str = ""
    """Dataset split: train/test for Fashion-MNIST, all for the others (empty: train, resp. all)."""
    checkpoint: str = ""
    """Weights to load (empty: the encoder's default): a .pth path for efficientnet-lite0; a checkpoint
    name or directory for clip/siglip2/vit/dinov2; a tag or file, optionally ARCH:TAG, for openclip."""
    image_size: int = 0
    """Side the images are resized to (0: the encoder's default; 96 for efficientnet-lite0)."""
    device: str = "auto"
    """Device to encode on: auto (cuda when available), cpu, cuda, cuda:1, ..."""
    batch_size: int = 256
    """Images per forward pass."""
    limit: int = 0
    """Extract only the first this many samples (0: all)."""
    dtype: str = "float16"
    """Storage dtype: float16 or float32."""
    shard_rows: int = DEFAULT_SHARD_ROWS
    """Rows per shard file."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("batch_size", "shard_rows"), 1)
        checks.require_at_least(self, ("image_size",), 0)
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0: all samples), got {self.limit}")
        checks.require_choice("dtype", self.dtype, DTYPES)


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


CHECKPOINT_ARGUMENT = {
    "efficientnet-lite0": "weights",
    "clip": "source",
    "siglip2": "source",
    "vit": "source",
    "dinov2": "source",
    "openclip": "pretrained",
}
"""Encoder name -> the loader argument ``ExtractConfig.checkpoint`` is passed as."""


def load_encoder_for(config: ExtractConfig) -> Encoder:
    """The encoder ``config`` names, with its checkpoint and input size, on its device."""
    kwargs: dict[str, object] = {}
    if config.image_size:
        kwargs["image_size"] = config.image_size
    if config.checkpoint:
        checkpoint = config.checkpoint
        if config.encoder == "openclip" and ":" in checkpoint and "/" not in checkpoint.split(":")[0]:
            kwargs["model"], checkpoint = checkpoint.split(":", 1)
        kwargs[CHECKPOINT_ARGUMENT.get(config.encoder, "weights")] = checkpoint
    encoder = load_encoder(config.encoder, **kwargs)
    encoder.model.to(resolve_device(config.device))
    return encoder


def extract_from_config(config: ExtractConfig, out: str | Path, progress: bool = True) -> ExtractReport:
    """Load the dataset and encoder ``config`` names and run ``extract_features``."""
    dataset = load_image_dataset(config.dataset, config.split or None)
    return extract_features(dataset, load_encoder_for(config), out, config, progress)


def extract_features(
    dataset: ImageSet,
    encoder: Encoder,
    out: str | Path,
    config: ExtractConfig = ExtractConfig(),
    progress: bool = True,
) -> ExtractReport:
    """Encode ``dataset`` (its first ``config.limit`` samples) into the store ``out``.

    Samples whose id is in the store already are skipped, so a killed run
    continues where its last shard ended. Of ``config`` this uses
    ``batch_size``, ``limit``, ``dtype`` and ``shard_rows``; ``encoder`` and
    ``dataset`` are given loaded (see ``extract_from_config``).
    """
    metadata = {
        "encoder": encoder.name,
        "weights": encoder.weights,
        "output": encoder.output,
        "image_size": encoder.image_size,
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
    }
    count = min(config.limit, len(dataset)) if config.limit else len(dataset)
    with FeatureStoreWriter(
        out, encoder.feature_dim, metadata, dtype=config.dtype, shard_rows=config.shard_rows
    ) as writer:
        todo = writer.remaining(dataset.ids[:count])
        logger.info("%s: %d samples to encode, %d stored already", dataset.name, len(todo), count - len(todo))
        start = time.perf_counter()
        desc = f"{encoder.name} on {dataset.name}"
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not progress) as bar:
            for begin in range(0, len(todo), config.batch_size):
                chunk = todo[begin : begin + config.batch_size]
                features = encoder.encode([dataset.image(i) for i in chunk])
                writer.append(features, [dataset.ids[i] for i in chunk], dataset.labels[chunk].tolist())
                bar.update(len(chunk))
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
