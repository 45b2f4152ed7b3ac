"""MonoScore and MonoLoss: the monosemanticity of neurons and SAE latents.

Pach et al., "Sparse Autoencoders Learn Monosemantic Features in
Vision-Language Models" (arXiv 2504.02821) define the score;
Nasiri-Sarvi et al., "MonoLoss" (arXiv 2602.12403) compute it in O(N) and
train with it.

Definition
----------
For latent ``k`` over ``N`` samples with activations ``a_nk`` and embeddings
``e_n``:

- min-max normalisation over the whole set,
  ``ã_nk = (a_nk - min_n a_nk) / (max_n a_nk - min_n a_nk)``;
- ``s_nm = cos(e_n, e_m)``;
- ``MS_k = sum_{n<m} ã_nk ã_mk s_nm / sum_{n<m} ã_nk ã_mk``, the
  activation-weighted average similarity of pairs of samples (the form
  confirmed by Pach et al., not the early ``1 / (N (N - 1))`` one).

``MS_k`` lies in ``[-1, 1]``. It is invariant to the max (a rescaling of the
latent) but not to the min (a shift). It is undefined ("dead") when the
latent is constant or fewer than two samples lie above its minimum.

With ``V_k = sum_n ã_nk ê_n`` (``ê = e / |e|``), ``u_k = sum_n ã_nk`` and
``v_k = sum_n ã_nk^2``, the pair sums are ``(|V_k|^2 - v_k) / 2`` and
``(u_k^2 - v_k) / 2``, so every score costs one ``(D, N) x (N, M)`` matmul.
``MonoScore`` keeps raw sums and the running min, and applies the min shift
algebraically at ``compute()``: one pass over the data, exact for any
batching and across processes.

Aggregation of dead latents differs between the two papers: Pach et al. give
them NaN and average the others (``dead="nan"``, the default); the MonoLoss
evaluation counts them as 0 (``dead="zero"``). ``summarize`` states both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torchmetrics import Metric

from harmono import _checks
from harmono._dtypes import compute_dtype
from harmono._mono_sparse_loss import sparse_batch_scores
from harmono._mono_stats import (
    DEAD_POLICIES,
    FLUSH_ROWS,
    Activations,
    MonoSums,
    SparseActivations,
    SparseEntries,
    accumulate,
    as_activations,
    as_entries,
    checked_batch,
    num_latents_of,
    num_rows,
    read_batch_values,
    require_same_device,
    scores_from_sums,
    unit_embeddings,
    values_of,
)

__all__ = [
    "BatchMonoScores",
    "MonoScore",
    "MonoSummary",
    "SparseActivations",
    "SparseEntries",
    "batch_mono_scores",
    "mono_loss",
    "mono_score",
    "mono_score_pairwise",
    "summarize",
]

DEFAULT_LOSS_EPS = 1e-8
LOSS_AVERAGES = ("active", "all")
PAIRWISE_BLOCK_BYTES = 256 * 2**20
"""Memory of one block of the pairwise reference: rows of the similarity matrix and their products."""


def mono_score(
    acts: Activations,
    emb: torch.Tensor,
    *,
    dead: str = "nan",
    num_latents: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """The MonoScore of every latent over a dataset (exact; O(N M D), or O(N k D) for sparse input).

    ``MS_k = sum_{n<m} ã_nk ã_mk s_nm / sum_{n<m} ã_nk ã_mk`` with
    ``ã_nk = (a_nk - min_n a_nk) / (max_n a_nk - min_n a_nk)`` (min-max over
    the whole set) and ``s_nm`` the cosine similarity of ``emb`` rows (see the
    module docstring). One streaming batch of ``MonoScore``.

    Parameters
    ----------
    acts : torch.Tensor or (values, indices)
        ``(N, M)`` activations of ``M`` latents, or TopK-style sparse
        activations ``values, indices`` of shape ``(N, k)`` (every latent not
        listed in a row is 0 there; needs ``num_latents``).
    emb : torch.Tensor
        ``(N, D)`` embeddings of the same samples (need not be unit-norm).
    dead : {"nan", "zero"}
        Score of a latent with no defined score (constant, or fewer than two
        samples above its min): NaN (Pach et al.) or 0 (MonoLoss evaluation).
    num_latents : int, optional
        ``M``; required for sparse input.
    validate : bool
        Read the data to reject NaN/inf, zero embeddings and bad indices.

    Returns
    -------
    torch.Tensor
        ``(M,)`` float64 scores in ``[-1, 1]``.

    Notes
    -----
    The matmul runs in float32 (float64 for float64 input) and the sums in
    float64.
    """
    _checks.require_choice("dead", dead, DEAD_POLICIES)
    checked, emb = checked_batch(acts, emb, num_latents, None, validate)
    sums = MonoSums.empty(num_latents_of(checked, num_latents), emb.shape[1], device=emb.device)
    accumulate(sums, checked, emb, validate)
    return scores_from_sums(sums, dead)


def mono_score_pairwise(
    acts: torch.Tensor,
    emb: torch.Tensor,
    *,
    dead: str = "nan",
    block_bytes: int = PAIRWISE_BLOCK_BYTES,
) -> torch.Tensor:
    """The MonoScore by its O(N^2) definition: a reference for tests and benchmarks.

    Builds the similarity matrix ``s_nm`` block by block of rows (``block_bytes``
    each, so ``N = 16384`` fits in memory), zeroes its diagonal and sums
    ``ã_nk ã_mk s_nm`` and ``ã_nk ã_mk`` over all pairs ``n != m``. Costs
    ``O(N^2 (D + M))``. Computes in float32, or float64 if ``acts`` or ``emb`` is float64.

    Parameters
    ----------
    acts : torch.Tensor
        ``(N, M)`` dense activations.
    emb : torch.Tensor
        ``(N, D)`` embeddings.
    dead : {"nan", "zero"}
        Score of a latent whose pair weight is 0.
    block_bytes : int
        Memory of one block of ``(rows, N)`` similarities plus ``(rows, M)`` products.

    Returns
    -------
    torch.Tensor
        ``(M,)`` scores in the compute dtype.
    """
    _checks.require_choice("dead", dead, DEAD_POLICIES)
    acts = as_activations(_checks.require_tensor("acts", acts), None, validate=True)
    _checks.require_finite("acts", acts)
    dtype = compute_dtype(acts, _checks.require_tensor("emb", emb))
    emb_hat = unit_embeddings(emb, acts.shape[0], None, True, dtype)
    require_same_device(acts, emb_hat, "emb")
    acts = acts.to(dtype)
    n, m = acts.shape
    low, high = acts.amin(dim=0), acts.amax(dim=0)
    spread = high - low
    normed = (acts - low) / torch.where(spread > 0, spread, torch.ones_like(spread))
    total = normed.sum(dim=0)
    rows = max(1, int(block_bytes // ((n + 2 * m) * acts.element_size())))
    numerator = torch.zeros(m, dtype=dtype, device=acts.device)
    pair_weight = torch.zeros(m, dtype=dtype, device=acts.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = normed[start:stop]
        sim = emb_hat[start:stop] @ emb_hat.T
        sim[torch.arange(stop - start, device=sim.device), torch.arange(start, stop, device=sim.device)] = 0.0
        numerator += (block * (sim @ normed)).sum(dim=0)
        pair_weight += (block * (total - block)).sum(dim=0)
    alive = pair_weight > 0
    score = numerator / torch.where(alive, pair_weight, torch.ones_like(pair_weight))
    return torch.where(alive, score, torch.full_like(score, torch.nan if dead == "nan" else 0.0))


@dataclass(frozen=True)
class MonoSummary:
    """Aggregate MonoScore of a set of latents, under both dead-latent conventions.

    Attributes
    ----------
    num_latents : int
        Number of latents scored.
    num_dead : int
        Latents with no defined score.
    mean, median, p90 : float
        Over latents with a score (Pach et al.: dead latents excluded); NaN if all are dead.
    mean_dead_as_zero, median_dead_as_zero, p90_dead_as_zero : float
        With dead latents counted as 0 (the MonoLoss evaluation).
    """

    num_latents: int
    num_dead: int
    mean: float
    median: float
    p90: float
    mean_dead_as_zero: float
    median_dead_as_zero: float
    p90_dead_as_zero: float

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _mean_median_p90(values: torch.Tensor) -> tuple[float, float, float]:
    if values.numel() == 0:
        return math.nan, math.nan, math.nan
    values = values.to(torch.float64)
    quantiles = torch.quantile(values, torch.tensor([0.5, 0.9], dtype=torch.float64, device=values.device))
    return float(values.mean()), float(quantiles[0]), float(quantiles[1])


def summarize(scores: torch.Tensor) -> MonoSummary:
    """Mean, median, p90 and dead count of per-latent scores, under both conventions.

    Parameters
    ----------
    scores : torch.Tensor
        ``(M,)`` scores with NaN for dead latents (``dead="nan"``, the default
        of ``mono_score`` and ``MonoScore``). Scores computed with
        ``dead="zero"`` cannot be told apart from real zeros.

    Returns
    -------
    MonoSummary
    """
    scores = _checks.require_tensor("scores", scores)
    _checks.require_ndim("scores", scores, 1, "(M,)")
    _checks.require_floating("scores", scores)
    _checks.require_non_empty("scores", scores, "(M,) with M >= 1")
    if torch.isinf(scores).any():
        raise ValueError("scores must be finite or NaN (NaN marks a dead latent), got an infinity")
    dead = torch.isnan(scores)
    alive = _mean_median_p90(scores[~dead])
    as_zero = _mean_median_p90(torch.where(dead, torch.zeros_like(scores), scores))
    return MonoSummary(scores.numel(), int(dead.sum()), *alive, *as_zero)


class MonoScore(Metric):
    """Streaming, mergeable MonoScore of ``num_latents`` latents (a torchmetrics ``Metric``).

    ``update(acts, emb)`` per batch, ``compute()`` -> ``(M,)`` float64
    scores, equal to ``mono_score`` on the concatenated data (see
    ``harmono.mono`` for the definition). One pass: the states are
    ``S = sum_n a_n ê_n^T (M, D)``, ``E = sum_n ê_n (D,)``, ``sum_n a_n``,
    ``sum_n a_n^2``, the per-latent min and max ``(M,)`` and the count, all
    float64; they merge by sum, min and max, so any batching and any number
    of ``torch.distributed`` processes give the same result. Batch matmuls
    accumulate in place into a float32 copy of ``S`` that moves into the
    float64 one every 65536 rows. The two take ``12 D M`` bytes (75 MB for
    ``D = 768``, ``M = 8192``); torchmetrics keeps one more copy of the
    initial states for ``reset``, and ``forward`` one of the current states.

    Parameters
    ----------
    num_latents : int
        ``M``.
    emb_dim : int
        ``D``.
    dead : {"nan", "zero"}
        Score of latents with no defined score (see ``mono_score``).
    validate : bool
        Read each batch to reject NaN/inf, zero embeddings and bad indices.
    **kwargs
        Passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``process_group``...).

    Examples
    --------
    >>> metric = MonoScore(num_latents=512, emb_dim=64)
    >>> for _ in range(3):
    ...     metric.update(torch.relu(torch.randn(100, 512)), torch.randn(100, 64))
    >>> metric.compute().shape
    torch.Size([512])
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_latents: int, emb_dim: int, dead: str = "nan", validate: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_latents = _checks.require_positive_int("num_latents", num_latents)
        self.emb_dim = _checks.require_positive_int("emb_dim", emb_dim)
        self.dead = _checks.require_choice("dead", dead, DEAD_POLICIES)
        self.validate = validate
        empty = MonoSums.empty(num_latents, emb_dim)
        for name in MonoSums.names():
            self.add_state(name, default=getattr(empty, name), dist_reduce_fx=MonoSums.reduction(name))
        self._rows_since_flush = 0

    def _sums(self) -> MonoSums:
        return MonoSums(**{name: getattr(self, name) for name in MonoSums.names()})

    def update(self, acts: Activations, emb: torch.Tensor) -> None:
        """Add a batch.

        Parameters
        ----------
        acts : torch.Tensor or (values, indices)
            ``(B, M)`` activations, or TopK-style ``values, indices`` of shape
            ``(B, k)`` (cost ``O(B k D)`` instead of ``O(B M D)``).
        emb : torch.Tensor
            ``(B, D)`` embeddings of the same samples.
        """
        checked, emb = self._checked(acts, emb)
        accumulate(self._sums(), checked, emb, self.validate)
        self._count_rows(num_rows(checked))

    def _checked(
        self, acts: Activations, emb: torch.Tensor
    ) -> tuple[torch.Tensor | SparseActivations, torch.Tensor]:
        checked, emb = checked_batch(acts, emb, self.num_latents, self.emb_dim, self.validate)
        require_same_device(values_of(checked), self.act_emb, "the metric states")
        return checked, emb

    def _count_rows(self, rows: int) -> None:
        """Move the float32 partial sums into float64 once ``FLUSH_ROWS`` rows went into them."""
        self._rows_since_flush += rows
        if self._rows_since_flush >= FLUSH_ROWS:
            self._sums().flush()
            self._rows_since_flush = 0

    def forward(self, acts: Activations, emb: torch.Tensor) -> torch.Tensor:
        """Add a batch and return the scores of that batch alone.

        The batch is checked completely first: torchmetrics sets the states
        aside while it scores the batch alone, so a batch rejected halfway
        would lose them.
        """
        checked, checked_emb = self._checked(acts, emb)
        if self.validate:
            read_batch_values(checked, checked_emb)
        rows_before = self._rows_since_flush  # torchmetrics resets around the batch
        validate, self.validate = self.validate, False
        try:
            batch_scores = super().forward(acts, emb)
        finally:
            self.validate = validate
        self._count_rows(rows_before)
        return batch_scores

    def merge_state(self, incoming_state: dict | Metric) -> None:
        """Merge the states of another ``MonoScore`` (or a dict of them) into this one."""
        super().merge_state(incoming_state)
        self._sums().flush()
        self._rows_since_flush = 0

    def reset(self) -> None:
        """Forget every batch seen."""
        super().reset()
        self._rows_since_flush = 0

    def compute(self) -> torch.Tensor:
        """``(M,)`` float64 scores of everything seen (NaN or 0 for dead latents)."""
        return scores_from_sums(self._sums(), self.dead)


class BatchMonoScores(NamedTuple):
    """Per-latent MonoScore of one batch, as the MonoLoss training objective computes it.

    Attributes
    ----------
    scores : torch.Tensor
        ``(M,)`` ``MS_k^(batch)``, 0 for inactive latents; differentiable.
    active : torch.Tensor
        ``(M,)`` bool, latents whose batch pair weight exceeds ``eps``.
    """

    scores: torch.Tensor
    active: torch.Tensor


def batch_mono_scores(
    acts: Activations,
    emb: torch.Tensor,
    *,
    num_latents: int | None = None,
    eps: float = DEFAULT_LOSS_EPS,
    validate: bool = True,
) -> BatchMonoScores:
    """Differentiable per-latent MonoScore of a batch (batch-local min-max), as MonoLoss trains it.

    ``ã = (a - min_batch a) / (max_batch a - min_batch a + eps)``, then with
    ``W_k = sum_n ã_nk ê_n``, ``u_k = sum_n ã_nk``, ``v_k = sum_n ã_nk^2``:
    the pair weight ``Z_k = (u_k^2 - v_k) / 2``, the latent is active when
    ``Z_k > eps``, and ``MS_k = (|W_k|^2 - v_k) / 2 / (Z_k + eps)`` (0 when
    inactive). Gradients reach ``acts`` through ``ã``, including the batch
    min and max, and are finite for dead, constant and single-active latents.
    Computed in float32 or better, also under autocast.

    Parameters
    ----------
    acts : torch.Tensor, (values, indices) or SparseEntries
        ``(B, M)`` activations (e.g. SAE latents), or sparse ones: TopK-style
        ``(B, k)`` values and indices, or ``SparseEntries`` (any number of
        latents per row). Sparse input costs ``O(nnz D)`` instead of the
        dense ``O(B M D)``, both ways, and gives the same scores and the same
        gradients for the listed values (an unlisted entry gets none: list
        every entry whose gradient is needed, zeros included).
    emb : torch.Tensor
        ``(B, D)`` embeddings of the same samples (the SAE input in MonoLoss).
        With sparse ``acts`` no gradient reaches them.
    num_latents : int, optional
        ``M``; required for sparse ``acts``.
    eps : float
        The MonoLoss ``eps`` (``1e-8``): added to the range and to ``Z_k``,
        and the activity threshold on ``Z_k``.
    validate : bool
        Read the data to reject NaN/inf, zero embeddings and, for sparse
        ``acts``, indices out of range, rows out of order and repeated entries.

    Returns
    -------
    BatchMonoScores
        ``scores (M,)`` and ``active (M,)``.
    """
    eps = _checks.require_positive_number("eps", eps)
    if isinstance(acts, tuple):
        return _sparse_batch_mono_scores(acts, emb, num_latents, eps, validate)
    acts = as_activations(_checks.require_tensor("acts", acts), num_latents, validate)
    if validate:
        _checks.require_finite("acts", acts)
    dtype = compute_dtype(acts, _checks.require_tensor("emb", emb))
    emb_hat = unit_embeddings(emb, acts.shape[0], None, validate, dtype)
    require_same_device(acts, emb_hat, "emb")
    with torch.autocast(device_type=acts.device.type, enabled=False):
        acts = acts.to(dtype)
        low, high = acts.amin(dim=0), acts.amax(dim=0)
        normed = (acts - low) / (high - low + eps)
        projected = emb_hat.T @ normed
        sq_sum = normed.square().sum(dim=0)
        total = normed.sum(dim=0)
        # (u^2 - v) / 2 as a sum of non-negative terms: exactly 0 for a single active sample
        pair_weight = 0.5 * (normed * (total - normed)).sum(dim=0)
        numerator = 0.5 * (projected.square().sum(dim=0) - sq_sum)
        active = pair_weight > eps
        safe_denominator = torch.where(active, pair_weight + eps, torch.ones_like(pair_weight))
        scores = torch.where(active, numerator / safe_denominator, torch.zeros_like(numerator))
    return BatchMonoScores(scores, active)


def _sparse_batch_mono_scores(
    acts: tuple, emb: object, num_latents: int | None, eps: float, validate: bool
) -> BatchMonoScores:
    entries = as_entries(acts, num_latents, validate)
    num_latents = _checks.require_positive_int("num_latents", num_latents)
    emb = _checks.require_tensor("emb", emb)
    if emb.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "with sparse acts no gradient reaches emb, but emb requires grad: pass emb.detach() "
            "(MonoLoss scores against fixed embeddings) or dense acts"
        )
    dtype = compute_dtype(entries.values, emb)
    emb_hat = unit_embeddings(emb, entries.num_rows, None, validate, dtype)
    require_same_device(entries.values, emb_hat, "emb")
    with torch.autocast(device_type=emb_hat.device.type, enabled=False):
        scores, active = sparse_batch_scores(
            entries._replace(values=entries.values.to(dtype)), emb_hat, num_latents, eps, validate
        )
    return BatchMonoScores(scores, active)


def mono_loss(
    acts: Activations,
    emb: torch.Tensor,
    *,
    num_latents: int | None = None,
    eps: float = DEFAULT_LOSS_EPS,
    average: str = "active",
    validate: bool = True,
) -> torch.Tensor:
    """The MonoLoss objective of a batch: ``1 - mean_k MS_k^(batch)``.

    ``MS_k^(batch)`` is the batch-local MonoScore of ``batch_mono_scores``.
    With ``average="active"`` (MonoLoss, for SAEs) the mean runs over the
    active latents ``A = {k : Z_k > eps}`` and the loss is 1 (with zero
    gradient) when none is active; with ``average="all"`` (the finetuning
    regulariser) it runs over all ``M`` latents. The loss lies in ``[0, 2]``
    (up to rounding).

    Parameters
    ----------
    acts : torch.Tensor, (values, indices) or SparseEntries
        ``(B, M)`` activations, or sparse ones (see ``batch_mono_scores``);
        gradients flow into them.
    emb : torch.Tensor
        ``(B, D)`` embeddings of the same samples.
    num_latents : int, optional
        ``M``; required for sparse ``acts``.
    eps : float
        See ``batch_mono_scores``.
    average : {"active", "all"}
        Which latents the mean runs over.
    validate : bool
        Read the data to reject NaN/inf and zero embeddings.

    Returns
    -------
    torch.Tensor
        Scalar loss in float32 (float64 if ``acts`` or ``emb`` is float64).
    """
    _checks.require_choice("average", average, LOSS_AVERAGES)
    scores, active = batch_mono_scores(acts, emb, num_latents=num_latents, eps=eps, validate=validate)
    if average == "all":
        return 1.0 - scores.mean()
    return 1.0 - scores.sum() / active.sum().clamp_min(1)
