"""Encoder features: extraction into the resumable, checksummed, memory-mapped feature store."""

from harmono.features.store import Batch, FeatureStore, StoreView
from harmono.features.store_writer import FeatureStoreWriter

__all__ = ["Batch", "FeatureStore", "FeatureStoreWriter", "StoreView"]
