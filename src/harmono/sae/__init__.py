"""Sparse autoencoders (TopK, BatchTopK, JumpReLU, ReLU) with MonoLoss as a named loss term."""

from harmono.sae.base import REGISTRY, SAE, SAEOutput, geometric_median
from harmono.sae.config import ARCHITECTURES, SAEConfig
from harmono.sae.jumprelu import JumpReLUSAE, ReLUSAE
from harmono.sae.topk import BatchTopKSAE, TopKSAE


def create_sae(config: SAEConfig) -> SAE:
    """A freshly initialised SAE of ``config.architecture``."""
    return REGISTRY[config.architecture](config)


__all__ = [
    "ARCHITECTURES",
    "REGISTRY",
    "SAE",
    "BatchTopKSAE",
    "JumpReLUSAE",
    "ReLUSAE",
    "SAEConfig",
    "SAEOutput",
    "TopKSAE",
    "create_sae",
    "geometric_median",
]
