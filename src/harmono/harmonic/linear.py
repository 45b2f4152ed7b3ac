"""The harmonic classification head: a drop-in for ``nn.Linear`` + cross-entropy."""

from __future__ import annotations

import math

import torch
from torch import nn

from harmono.core import checks
from harmono.harmonic.functional import (
    DEFAULT_EPS,
    DISTANCES,
    _check_eps,
    _resolve_exponent,
    harmonic_logits,
    harmonic_loss,
)


class HarmonicLinear(nn.Module):
    """A harmonic classification head: a drop-in for ``nn.Linear`` + cross-entropy.

    ``forward(x)`` returns the harmonic logits ``z_i = -n log ||x - c_i||`` of
    :func:`harmonic_logits` (convention ``p_i ∝ d_i^(-n)``; the official
    code's ``n`` equals our ``n/2``), so ``nn.CrossEntropyLoss`` and
    ``F.cross_entropy`` work unchanged and give the harmonic loss. For large
    vocabularies call :meth:`loss`, which never materialises the logits.

    Parameters
    ----------
    in_features : int
        ``D``, the size of each input.
    out_features : int
        ``C``, the number of classes (centers).
    exponent : float, optional
        Harmonic exponent ``n``; default ``sqrt(in_features)``.
    distance : {"euclidean", "cosine"}
        ``"cosine"`` uses ``d = 1 - cos(x, c)``; arXiv 2603.10225 found it the
        best distance for accuracy and training stability.
    eps : float
        See :func:`harmonic_logits`.
    validate : bool
        NaN/inf checks on every call (see :func:`harmonic_logits`).

    Attributes
    ----------
    weight : Parameter, shape (C, D)
        The class centers; tie it to an embedding exactly like a linear head.

    Shapes
    ------
    ``x (..., D)`` -> logits ``(..., C)`` (float32 even under autocast).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        exponent: float | None = None,
        *,
        distance: str = "euclidean",
        eps: float = DEFAULT_EPS,
        validate: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.exponent = _resolve_exponent(exponent, in_features)
        self.distance = checks.require_choice("distance", distance, DISTANCES)
        self.eps = _check_eps(eps)
        self.validate = validate
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the centers as ``nn.Linear`` does (uniform in ±1/sqrt(D))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def centers(self) -> torch.Tensor:
        """The class centers, shape ``(out_features, in_features)`` (the weight)."""
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Harmonic logits: ``x (..., D)`` -> ``(..., C)``."""
        return harmonic_logits(
            x, self.weight, self.exponent, self.eps, distance=self.distance, validate=self.validate
        )

    def loss(self, x: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """:func:`harmonic_loss` of this head, never holding the full logits.

        ``x (..., D)`` and ``target (...)`` -> a scalar (or shape ``(...)``
        with ``reduction="none"``); ``kwargs`` as for :func:`harmonic_loss`
        (``reduction``, ``ignore_index``, ``label_smoothing``, ``chunk_size``).
        """
        return harmonic_loss(
            x,
            self.weight,
            target,
            self.exponent,
            eps=self.eps,
            distance=self.distance,
            validate=self.validate,
            **kwargs,
        )

    def extra_repr(self) -> str:
        """Sizes, exponent and distance, shown in ``repr(module)``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"exponent={self.exponent:.4g}, distance={self.distance!r}"
        )
