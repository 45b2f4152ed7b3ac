"""Image encoders by name, from local weights only: feature extraction and finetuning backbones."""

from harmono.encoders.base import Encoder
from harmono.encoders.registry import load_backbone, load_encoder

__all__ = ["Encoder", "load_backbone", "load_encoder"]
