"""harmono: interpretable models with harmonic loss and MonoLoss."""

from harmono.harmonic import (
    HarmonicLinear,
    default_exponent,
    harmax,
    harmonic_logits,
    harmonic_loss,
)

__version__ = "0.1.0"

__all__ = [
    "HarmonicLinear",
    "__version__",
    "default_exponent",
    "harmax",
    "harmonic_logits",
    "harmonic_loss",
]
