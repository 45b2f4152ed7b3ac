"""An image classifier with a scored intermediate layer: backbone -> Linear + ReLU (+ TopK) -> head.

The MonoLoss finetuning setup: any backbone (``harmono.encoders.registry``)
gives features ``(B, D)``; an added intermediate layer ``Linear(D, D *
expansion)`` + ReLU (+ optional per-row TopK) gives the units whose
MonoScore is trained and measured; the head is linear or harmonic
(``HarmonicLinear``, so both papers combine in one model).

Saved as ``config.json`` + ``model.safetensors`` (``save_pretrained`` /
``from_pretrained``): the whole network, backbone included, so a finetuned
model reloads without its original weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from harmono.core import checks
from harmono.core.io import (
    PRETRAINED_CONFIG,
    PRETRAINED_WEIGHTS,
    load_fitting_state,
    read_pretrained,
    write_pretrained,
)
from harmono.encoders import load_backbone
from harmono.harmonic import HarmonicLinear
from harmono.models.lora import apply_lora

HEADS = ("linear", "harmonic")
CONFIG_FILE = PRETRAINED_CONFIG
WEIGHTS_FILE = PRETRAINED_WEIGHTS


@dataclass(frozen=True)
class ClassifierConfig:
    """The network: backbone, intermediate layer, head."""

    num_classes: int = 10
    """Number of classes C."""
    backbone: str = "efficientnet-lite0"
    """Backbone (see harmono.encoders.registry): efficientnet-lite0, clip, timm:<m>, torchvision:<m>, ..."""
    backbone_weights: str = "pretrained"
    """pretrained, random, or the path of a weights file."""
    backbone_source: str = ""
    """Checkpoint name or directory of a transformers backbone, or the open_clip architecture."""
    image_size: int = 0
    """Input side S in pixels (0: the backbone's default)."""
    expansion: int = 1
    """Intermediate width = feature size D * expansion."""
    topk: int = 0
    """Keep the k largest intermediate units per image (0: all; k >= width is a no-op and refused)."""
    head: str = "linear"
    """Classification head: linear, or harmonic (distance-based HarmonicLinear)."""
    harmonic_exponent: float = 0.0
    """Harmonic exponent n (0: sqrt of the intermediate width)."""
    lora_rank: int = 0
    """LoRA rank on the backbone's lora_targets layers, backbone otherwise frozen (0: finetune it all)."""
    lora_alpha: float = 32.0
    """LoRA scale numerator (the update is scaled by alpha / rank)."""
    lora_targets: str = "q_proj,v_proj"
    """Comma-separated names of the linear layers LoRA adapts."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("num_classes", "expansion"), 1)
        checks.require_at_least(self, ("image_size", "topk", "lora_rank"), 0)
        checks.require_choice("head", self.head, HEADS)
        checks.require_non_negative_number("harmonic_exponent", self.harmonic_exponent)
        checks.require_positive_number("lora_alpha", self.lora_alpha)
        if self.lora_rank and not self.lora_target_names:
            raise ValueError(f"lora_targets must name at least one layer, got {self.lora_targets!r}")

    @property
    def lora_target_names(self) -> tuple[str, ...]:
        """``lora_targets`` as a tuple of names."""
        return tuple(name.strip() for name in self.lora_targets.split(",") if name.strip())

    @classmethod
    def from_dict(cls, record: dict) -> ClassifierConfig:
        """The config of ``asdict(config)``; unknown keys are an error."""
        checks.require_known_fields(cls, record, "classifier config")
        return cls(**record)


class ClassifierOutput(NamedTuple):
    """What ``MonoClassifier.forward`` returns.

    Attributes
    ----------
    logits : torch.Tensor
        ``(B, C)`` (harmonic logits for the harmonic head).
    hidden : torch.Tensor
        ``(B, W)`` intermediate units after ReLU (and TopK): the scored layer.
    features : torch.Tensor
        ``(B, D)`` backbone features.
    """

    logits: torch.Tensor
    hidden: torch.Tensor
    features: torch.Tensor


def keep_topk(units: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the ``k`` largest entries of each row of ``units (B, W)``; the kept ones get gradients."""
    values, indices = units.topk(k, dim=1)
    return torch.zeros_like(units).scatter(1, indices, values)


class MonoClassifier(nn.Module):
    """Backbone -> intermediate layer -> head (see the module docstring).

    Parameters
    ----------
    config : ClassifierConfig
    weights : str, optional
        Override ``config.backbone_weights`` for building (``from_pretrained``
        builds with ``"random"`` and then loads the saved tensors).

    Attributes
    ----------
    backbone : nn.Module
        ``pixels (B, 3, S, S) -> features (B, D)`` (``Encoder.features`` of the backbone).
    intermediate : nn.Linear
        ``D -> W``.
    head : nn.Linear or HarmonicLinear
        ``W -> C``.
    image_size : int
        ``S``.
    mean, std : tuple of float
        Per-channel input normalisation of RGB values in ``[0, 1]``.

    Shapes
    ------
    ``pixels (B, 3, S, S)``, normalised -> ``ClassifierOutput``.
    """

    def __init__(self, config: ClassifierConfig, weights: str | None = None) -> None:
        super().__init__()
        self.config = config
        encoder = load_backbone(
            config.backbone, weights or config.backbone_weights, config.backbone_source, config.image_size
        )
        self.backbone = encoder.features
        self.feature_dim = encoder.feature_dim
        self.image_size = encoder.image_size
        self.mean, self.std = encoder.mean, encoder.std
        self.adapted_layers: list[str] = []
        if config.lora_rank:
            self.adapted_layers = apply_lora(
                self.backbone, config.lora_target_names, config.lora_rank, config.lora_alpha
            )
        width = self.feature_dim * config.expansion
        if config.topk >= width:
            raise ValueError(
                f"topk must be below the intermediate width {width} (k = width keeps every unit, a no-op), "
                f"got {config.topk}; use 0 for no TopK"
            )
        self.width = width
        self.intermediate = nn.Linear(self.feature_dim, width)
        if config.head == "harmonic":
            self.head: nn.Module = HarmonicLinear(width, config.num_classes, config.harmonic_exponent or None)
        else:
            self.head = nn.Linear(width, config.num_classes)
        self.backbone.train()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, S, S)`` in ``[0, 1]`` -> the backbone's normalised input."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def forward(self, pixels: torch.Tensor) -> ClassifierOutput:
        """Normalised ``pixels (B, 3, S, S)`` -> logits, intermediate units and features."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (B, 3, S, S), got {tuple(pixels.shape)}")
        features = self.backbone(pixels)
        hidden = torch.relu(self.intermediate(features))
        if self.config.topk:
            hidden = keep_topk(hidden, self.config.topk)
        return ClassifierOutput(self.head(hidden), hidden, features)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; return it."""
        return write_pretrained(directory, self.state_dict(), asdict(self.config), self.architecture)

    @property
    def architecture(self) -> str:
        """What the weights are for, stored with them: ``classifier/<head>``."""
        return f"classifier/{self.config.head}"

    @staticmethod
    def from_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> MonoClassifier:
        """The classifier saved in ``directory``, in eval mode (nothing is unpickled)."""
        record, state, saved_architecture = read_pretrained(directory, "classifier")
        model = MonoClassifier(ClassifierConfig.from_dict(record), weights="random")
        load_fitting_state(model, state, directory, model.architecture, saved_architecture)
        return model.to(device).eval()
