"""Image encoders by name: one table for feature extraction and finetuning backbones alike.

Every name loads from local weights only (harmono never downloads) and gives an
``harmono.encoders.base.Encoder``.

| name | family module | extraction | backbone |
|---|---|---|---|
| ``efficientnet-lite0`` (default) | ``efficientnet`` | yes | yes |
| ``clip``, ``siglip2``, ``vit``, ``dinov2`` | ``huggingface`` | yes | yes |
| ``openclip`` | ``openclip`` | yes | yes |
| ``tiny-cnn`` | ``vision`` | no | yes |
| ``timm:<model>``, ``torchvision:<model>`` | ``vision`` | no | yes |

- ``load_encoder(name, **kwargs)`` (feature extraction) passes the family's own keywords
  (e.g. ``weights``, ``image_size`` for ``efficientnet-lite0``; ``source`` for the
  ``transformers`` encoders; ``model``, ``pretrained`` for ``openclip``).
- ``load_backbone(name, weights, source, image_size)`` (finetuning) takes the same arguments
  for every name: ``weights`` is ``"pretrained"``, ``"random"`` or a weights file; ``source``
  a checkpoint name or directory (``transformers`` backbones) or an architecture (``openclip``).
  ``timm:<model>`` and ``torchvision:<model>`` are resolved by prefix.

A new family is a module next to this one (importing ``harmono.encoders.base`` only, never
this registry) and its lines in ``ENCODERS`` (or ``MODEL_FAMILIES``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from harmono.encoders import efficientnet, huggingface, openclip, vision
from harmono.encoders.base import BackboneLoader, Encoder, ExtractLoader


@dataclass(frozen=True)
class EncoderEntry:
    """How one name loads: for feature extraction, as a finetuning backbone, or both."""

    extract: ExtractLoader | None = None
    """Feature-extraction loader ``f(**kwargs) -> Encoder`` (None: not an extraction encoder)."""
    backbone: BackboneLoader | None = None
    """Backbone loader ``f(weights, source, image_size) -> Encoder`` (None: not a backbone)."""


ENCODERS: dict[str, EncoderEntry] = {
    "efficientnet-lite0": EncoderEntry(efficientnet.efficientnet_lite0, efficientnet.efficientnet_backbone),
    **{
        name: EncoderEntry(partial(huggingface.hf_encoder, name), partial(huggingface.hf_backbone, name))
        for name in huggingface.HF_ENCODERS
    },
    "openclip": EncoderEntry(openclip.openclip_encoder, openclip.openclip_backbone),
    "tiny-cnn": EncoderEntry(backbone=vision.tiny_cnn_backbone),
}
"""Name -> its loaders (see the module docstring)."""

MODEL_FAMILIES: dict[str, Callable[[str, str, int | None], Encoder]] = {
    "timm": vision.timm_backbone,
    "torchvision": vision.torchvision_backbone,
}
"""Backbones named ``<family>:<model>``: family -> ``f(model, weights, image_size) -> Encoder``."""


def encoder_names() -> tuple[str, ...]:
    """The names ``load_encoder`` accepts, in table order."""
    return tuple(name for name, entry in ENCODERS.items() if entry.extract is not None)


def backbone_names() -> tuple[str, ...]:
    """The names ``load_backbone`` accepts besides ``<family>:<model>``, in table order."""
    return tuple(name for name, entry in ENCODERS.items() if entry.backbone is not None)


def load_encoder(name: str, **kwargs: object) -> Encoder:
    """The feature-extraction encoder ``name``, in eval mode.

    Parameters
    ----------
    name : str
        One of ``encoder_names()``.
    **kwargs
        The family loader's keywords (see the module docstring).

    Returns
    -------
    Encoder
        The encoder.
    """
    entry = ENCODERS.get(name)
    if entry is None or entry.extract is None:
        raise ValueError(f"encoder must be one of {encoder_names()}, got {name!r}")
    return entry.extract(**kwargs)


def load_backbone(name: str, weights: str = "pretrained", source: str = "", image_size: int = 0) -> Encoder:
    """The backbone ``name`` as an ``Encoder`` in eval mode (see the module docstring).

    Parameters
    ----------
    name : str
        One of ``backbone_names()``, ``timm:<model>`` or ``torchvision:<model>``.
    weights : str
        ``"pretrained"``, ``"random"`` or the path of a weights file.
    source : str
        Checkpoint name or directory (``transformers`` backbones), architecture
        (``openclip``); empty for the default.
    image_size : int
        Input side ``S`` (0: the backbone's default).

    Returns
    -------
    Encoder
        The backbone; ``Encoder.features`` is differentiable.
    """
    size = image_size or None
    family, colon, model = name.partition(":")
    if colon and family in MODEL_FAMILIES:
        return MODEL_FAMILIES[family](model, weights, size)
    entry = ENCODERS.get(name)
    if entry is None or entry.backbone is None:
        prefixed = " or ".join(f"{prefix}:<model>" for prefix in MODEL_FAMILIES)
        raise ValueError(f"backbone must be one of {backbone_names()}, {prefixed}, got {name!r}")
    return entry.backbone(weights, source, size)
