"""Features of vision encoders: the memory-mapped feature store (encoders and extraction to come)."""

from harmono.features.store import Batch, FeatureStore, FeatureStoreWriter, StoreView

__all__ = ["Batch", "FeatureStore", "FeatureStoreWriter", "StoreView"]
