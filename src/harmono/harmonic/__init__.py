"""The harmonic loss: distance-based logits, HarMax, and the harmonic classification head.

- ``functional``: :func:`harmonic_logits`, :func:`harmax`, :func:`harmonic_loss` and the exponent convention.
- ``linear``: :class:`HarmonicLinear`, the drop-in for ``nn.Linear`` + cross-entropy.
- ``kernel``: the chunked loss that never materialises the ``(N, C)`` logits.
"""

from harmono.harmonic.functional import default_exponent, harmax, harmonic_logits, harmonic_loss
from harmono.harmonic.linear import HarmonicLinear

__all__ = ["HarmonicLinear", "default_exponent", "harmax", "harmonic_logits", "harmonic_loss"]
