"""The reference embeddings that MonoLoss and the MonoScore of a finetuning run score units against.

A reference maps ``(pixels in [0, 1] (B, 3, S, S), positions (B,))`` to embeddings ``(B, E)``, where
``positions`` are the samples' places in the training or validation subset; ``FinetuneConfig.reference``
chooses the kind (see ``REFERENCES``):

- ``"encoder"`` (default): a frozen reference encoder (the pretrained
  backbone unless ``reference_backbone`` names another) run on the same
  augmented view the classifier sees;
- ``"store"``: rows of a feature store of the un-augmented images, looked up
  by sample id (the official code's way; with augmentation the embedding then
  describes another view of the image than the one scored).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from harmono.encoders.registry import Encoder, load_backbone
from harmono.experiments.mono.finetune_config import FinetuneConfig
from harmono.features.store import FeatureStore
from harmono.models.classifier import ClassifierConfig


class Reference(Protocol):
    """Reference embeddings of ``dim`` features per sample."""

    dim: int
    """``E``, features per embedding."""

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` embeddings of the samples at ``positions (B,)``, ``pixels (B, 3, S, S)`` in [0, 1]."""
        ...


class _StoreReference:
    """Reference embeddings looked up by sample id in a feature store."""

    def __init__(self, path: str, ids: tuple[str, ...]) -> None:
        store = FeatureStore(path, verify="shape")
        rows = {sample_id: row for row, sample_id in enumerate(store.ids)}
        missing = [sample_id for sample_id in ids if sample_id not in rows]
        if missing:
            raise ValueError(
                f"{path}: expected reference embeddings of every sample, {len(missing)} of {len(ids)} are "
                f"missing (e.g. {missing[0]!r})"
            )
        self.store, self.rows, self.dim = store, np.array([rows[i] for i in ids]), store.dim

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` rows of the samples at ``positions (B,)`` of the subset (``pixels`` unused)."""
        return torch.from_numpy(self.store.take(self.rows[positions.numpy()], np.float32)).to(pixels.device)


class _CachedReference:
    """A reference of fixed images (the un-augmented validation set): each position is embedded once."""

    def __init__(self, reference: Reference, size: int) -> None:
        self.reference, self.dim, self.size = reference, reference.dim, size
        self.rows: torch.Tensor | None = None
        self.filled = torch.zeros(size, dtype=torch.bool)

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` embeddings of the samples at ``positions (B,)``, computed the first time only."""
        if self.rows is None:
            self.rows = torch.zeros(self.size, self.dim, device=pixels.device)
        new = ~self.filled[positions]
        if new.any():
            self.rows[positions[new]] = self.reference(pixels[new.to(pixels.device)], positions[new])
            self.filled[positions[new]] = True
        return self.rows[positions]


class _EncoderReference:
    """A frozen reference encoder on the view the classifier sees (pixels in ``[0, 1]``)."""

    def __init__(self, encoder: Encoder, device: torch.device) -> None:
        self.encoder, self.dim = encoder, encoder.feature_dim
        encoder.model.to(device).eval().requires_grad_(False)
        encoder.features.to(device).eval()
        self.mean = torch.tensor(encoder.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(encoder.std, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` features of ``pixels (B, 3, S, S)`` in ``[0, 1]`` (``positions`` unused)."""
        side = self.encoder.image_size
        if pixels.shape[-1] != side:
            pixels = F.interpolate(
                pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
        return self.encoder.features((pixels - self.mean) / self.std).float()


def _reference_encoder(model_config: ClassifierConfig, config: FinetuneConfig, side: int) -> Encoder:
    if config.reference_backbone:
        return load_backbone(config.reference_backbone, "pretrained", config.reference_source, side)
    weights = model_config.backbone_weights
    return load_backbone(model_config.backbone, weights, model_config.backbone_source, side)


def build_references(
    model_config: ClassifierConfig,
    config: FinetuneConfig,
    train_ids: tuple[str, ...],
    val_ids: tuple[str, ...],
    side: int,
    device: torch.device,
) -> tuple[Reference, Reference]:
    """The training and the validation reference of a run.

    Parameters
    ----------
    model_config : ClassifierConfig
        The network; its backbone is the default reference encoder.
    config : FinetuneConfig
        ``reference`` and the ``reference_*`` settings choose the references.
    train_ids, val_ids : tuple of str
        Sample ids of the training and validation subsets, in subset order (``positions`` index them).
    side : int
        ``S``, the side of the classifier's input images.
    device : torch.device
        Where the reference encoder runs.

    Returns
    -------
    tuple of Reference
        ``(train, val)``; the validation reference embeds each image once.
    """
    if config.reference == "encoder":
        encoder = _EncoderReference(_reference_encoder(model_config, config, side), device)
        return encoder, _CachedReference(encoder, len(val_ids))
    train_reference = _StoreReference(config.reference_store, train_ids)
    val_reference = _StoreReference(config.reference_val_store, val_ids)
    if train_reference.dim != val_reference.dim:
        raise ValueError(
            f"expected reference stores of one dimension, got {train_reference.dim} and {val_reference.dim}"
        )
    return train_reference, val_reference
