"""Sparse autoencoders (TopK, BatchTopK, JumpReLU, ReLU) with MonoLoss as a loss term; foreign SAEs."""

from harmono.sae.base import SAE, SAEOutput, geometric_median
from harmono.sae.config import SAEConfig
from harmono.sae.registry import REGISTRY
from harmono.sae.topk import BatchTopKSAE, TopKSAE

# isort: split
from harmono.sae.jumprelu import JumpReLUSAE, ReLUSAE  # after the TopK family: the order of ARCHITECTURES

# isort: split
from harmono.sae.foreign import ForeignSAE  # registers the foreign formats SAE.from_pretrained reads
from harmono.sae.registry import FORMATS

ARCHITECTURES = tuple(REGISTRY)
"""The registered architecture names: topk, batchtopk, jumprelu, relu."""


def create_sae(config: SAEConfig) -> SAE:
    """A freshly initialised SAE of ``config.architecture``."""
    return REGISTRY[config.architecture](config)


__all__ = [
    "ARCHITECTURES",
    "REGISTRY",
    "SAE",
    "FORMATS",
    "BatchTopKSAE",
    "ForeignSAE",
    "JumpReLUSAE",
    "ReLUSAE",
    "SAEConfig",
    "SAEOutput",
    "TopKSAE",
    "create_sae",
    "geometric_median",
]
