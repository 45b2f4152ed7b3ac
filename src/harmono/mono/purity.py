"""Class purity of latents: how much of a latent's activity falls in one class.

The MonoLoss paper reports "binary" and "weighted" purity; its sources do not
give the formulas, so harmono states its own:

- a sample *activates* latent ``k`` when ``a_nk > threshold`` (default 0);
- the *dominant class* of ``k`` is the class with the most activating
  samples (ties: the smallest class index);
- binary purity = fraction of activating samples in the dominant class;
- weighted purity = fraction of the activation mass ``sum a_nk`` of the
  activating samples that falls in the dominant class.

Both are NaN (dominant class -1) for a latent no sample activates. The counts
and masses are sums, so ``ClassPurity`` streams and merges exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchmetrics import Metric

from harmono.core import checks
from harmono.core.dtypes import compute_dtype
from harmono.mono.inputs import (
    Activations,
    SparseActivations,
    as_activations,
    num_latents_of,
    num_rows,
    require_distinct_per_row,
    require_same_device,
    values_of,
)
from harmono.mono.sums import STATE_DTYPE

__all__ = ["ClassPurity", "PurityResult", "class_purity"]


class PurityResult(NamedTuple):
    """Per-latent class purity.

    Attributes
    ----------
    binary : torch.Tensor
        ``(M,)`` float64 fraction of activating samples in the dominant class.
    weighted : torch.Tensor
        ``(M,)`` float64 fraction of activation mass in the dominant class.
    dominant_class : torch.Tensor
        ``(M,)`` long, -1 for a latent no sample activates.
    num_active : torch.Tensor
        ``(M,)`` long, number of activating samples.
    """

    binary: torch.Tensor
    weighted: torch.Tensor
    dominant_class: torch.Tensor
    num_active: torch.Tensor


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(
            f"threshold must be a number >= 0 (activation mass must be positive), got {threshold!r}"
        )
    return float(threshold)


def _check_labels(
    labels: object, n: int, device: torch.device, num_classes: int, validate: bool
) -> torch.Tensor:
    labels = checks.require_class_targets(
        labels,
        (n,),
        num_classes,
        None,
        validate,
        name="labels",
        shape_doc=f"shape (N,) = ({n},), one per sample of acts",
    )
    if labels.device != device:
        raise ValueError(f"acts and labels must be on one device, got {device} and {labels.device}")
    return labels.long()


def _require_valid_values(acts: torch.Tensor | SparseActivations, validate: bool) -> None:
    """Finite dense values; distinct indices in each sparse row (else a latent would count twice)."""
    if not validate:
        return
    if isinstance(acts, SparseActivations):
        require_distinct_per_row(acts.indices)
    else:
        checks.require_finite("acts", acts)


def batch_class_counts(
    acts: torch.Tensor | SparseActivations,
    labels: torch.Tensor,
    num_classes: int,
    num_latents: int,
    threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class activating-sample counts and activation masses of one batch.

    Parameters
    ----------
    acts : torch.Tensor or SparseActivations
        Checked ``(N, M)`` or sparse ``(N, k)`` activations.
    labels : torch.Tensor
        ``(N,)`` long class indices.
    num_classes, num_latents : int
        ``C`` and ``M``.
    threshold : float
        A sample activates a latent when its activation exceeds it (>= 0).

    Returns
    -------
    tuple of torch.Tensor
        ``counts (C, M)`` and ``mass (C, M)``, float64. ``O(N M)`` for dense
        input, ``O(N k)`` for sparse input.
    """
    device = labels.device
    counts = torch.zeros(num_classes, num_latents, dtype=STATE_DTYPE, device=device)
    mass = torch.zeros_like(counts)
    with torch.no_grad():
        if isinstance(acts, SparseActivations):
            k = acts.values.shape[1]
            value = acts.values.reshape(-1).to(STATE_DTYPE)
            on = value > threshold
            where = (labels.repeat_interleave(k)[on], acts.indices.reshape(-1)[on])
            counts.index_put_(where, torch.ones_like(value[on]), accumulate=True)
            mass.index_put_(where, value[on], accumulate=True)
        else:  # batch sums in float32 (exact counts below 2^24 rows) or float64, then into float64
            work = compute_dtype(acts)
            on = acts > threshold
            counts += torch.zeros_like(counts, dtype=work).index_add_(0, labels, on.to(work))
            active_mass = torch.where(on, acts, torch.zeros_like(acts)).to(work)
            mass += torch.zeros_like(mass, dtype=work).index_add_(0, labels, active_mass)
    return counts, mass


def purity_from_counts(counts: torch.Tensor, mass: torch.Tensor) -> PurityResult:
    """``PurityResult`` from ``(C, M)`` counts and masses."""
    num_active = counts.sum(dim=0)
    top_count, dominant = counts.max(dim=0)
    alive = num_active > 0
    safe = torch.where(alive, num_active, torch.ones_like(num_active))
    total_mass = mass.sum(dim=0)
    dominant_mass = mass.gather(0, dominant[None]).squeeze(0)
    nan = torch.full_like(num_active, torch.nan)
    return PurityResult(
        binary=torch.where(alive, top_count / safe, nan),
        weighted=torch.where(
            alive, dominant_mass / torch.where(alive, total_mass, torch.ones_like(total_mass)), nan
        ),
        dominant_class=torch.where(alive, dominant, torch.full_like(dominant, -1)),
        num_active=num_active.round().long(),
    )


def class_purity(
    acts: Activations,
    labels: torch.Tensor,
    *,
    num_classes: int | None = None,
    num_latents: int | None = None,
    threshold: float = 0.0,
    validate: bool = True,
) -> PurityResult:
    """Binary and activation-weighted class purity of every latent (see the module docstring).

    Parameters
    ----------
    acts : torch.Tensor or (values, indices)
        ``(N, M)`` activations, or TopK-style ``values, indices`` of shape
        ``(N, k)`` (needs ``num_latents``).
    labels : torch.Tensor
        ``(N,)`` integer class of each sample.
    num_classes : int, optional
        ``C``; default ``labels.max() + 1``.
    num_latents : int, optional
        ``M``; required for sparse input.
    threshold : float
        A sample activates a latent when its activation exceeds this (>= 0).
    validate : bool
        Read the data to reject NaN/inf, bad indices and labels out of range.

    Returns
    -------
    PurityResult
        ``binary``, ``weighted``, ``dominant_class``, ``num_active``, each ``(M,)``.
    """
    threshold = _check_threshold(threshold)
    checked = as_activations(acts, num_latents, validate)
    _require_valid_values(checked, validate)
    n = num_rows(checked)
    if num_classes is None:
        labels = checks.require_tensor("labels", labels)
        num_classes = int(labels.max()) + 1 if labels.numel() else 0
        if labels.numel() and num_classes == 0 and bool((labels == -1).all()):
            raise ValueError(
                "labels must hold class indices in [0, C), got -1 for every sample: there is no class "
                "to measure purity against"
            )
    checks.require_positive_int("num_classes", num_classes)
    labels = _check_labels(labels, n, values_of(checked).device, num_classes, validate)
    m = num_latents_of(checked, num_latents)
    return purity_from_counts(*batch_class_counts(checked, labels, num_classes, m, threshold))


class ClassPurity(Metric):
    """Streaming class purity of ``num_latents`` latents over ``num_classes`` classes.

    ``update(acts, labels)`` per batch (dense ``(B, M)`` or sparse
    ``(values, indices)``), ``compute()`` -> ``PurityResult``. The states are
    ``(C, M)`` float64 counts and masses, merged by sum across batches and
    processes.

    Parameters
    ----------
    num_latents, num_classes : int
        ``M`` and ``C``.
    threshold : float
        A sample activates a latent when its activation exceeds this (>= 0).
    validate : bool
        Read each batch to reject NaN/inf, bad indices and labels out of range.
    **kwargs
        Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_latents: int, num_classes: int, threshold: float = 0.0, validate: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_latents = checks.require_positive_int("num_latents", num_latents)
        self.num_classes = checks.require_positive_int("num_classes", num_classes)
        self.threshold = _check_threshold(threshold)
        self.validate = validate
        zeros = torch.zeros(num_classes, num_latents, dtype=STATE_DTYPE)
        self.add_state("counts", default=zeros, dist_reduce_fx="sum")
        self.add_state("mass", default=zeros.clone(), dist_reduce_fx="sum")

    def update(self, acts: Activations, labels: torch.Tensor) -> None:
        """Add a batch of ``(B, M)`` (or sparse) activations and their ``(B,)`` labels."""
        checked, labels = self._checked(acts, labels)
        counts, mass = batch_class_counts(checked, labels, self.num_classes, self.num_latents, self.threshold)
        self.counts = self.counts + counts
        self.mass = self.mass + mass

    def _checked(
        self, acts: Activations, labels: torch.Tensor
    ) -> tuple[torch.Tensor | SparseActivations, torch.Tensor]:
        checked = as_activations(acts, self.num_latents, self.validate)
        require_same_device(values_of(checked), self.counts, "the metric states")
        _require_valid_values(checked, self.validate)
        labels = _check_labels(
            labels, num_rows(checked), values_of(checked).device, self.num_classes, self.validate
        )
        return checked, labels

    def forward(self, acts: Activations, labels: torch.Tensor) -> PurityResult:
        """Add a batch and return the purity of that batch alone.

        The batch is checked before torchmetrics sets the states aside to
        score it alone, so a rejected batch loses nothing.
        """
        self._checked(acts, labels)
        return super().forward(acts, labels)

    def compute(self) -> PurityResult:
        """Per-latent purity of everything seen."""
        return purity_from_counts(self.counts, self.mass)
