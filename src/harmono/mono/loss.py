"""MonoLoss: the per-batch MonoScore as a differentiable training objective."""

from __future__ import annotations

from typing import NamedTuple

import torch

from harmono.core import checks
from harmono.core.dtypes import compute_dtype
from harmono.mono.inputs import (
    Activations,
    as_activations,
    as_entries,
    require_same_device,
    unit_embeddings,
)
from harmono.mono.sparse_loss import sparse_batch_scores

DEFAULT_LOSS_EPS = 1e-8
LOSS_AVERAGES = ("active", "all")


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
    A latent whose activations, or any embedding, hold NaN/inf scores NaN,
    so the loss is never finite on non-finite input (``validate=False``).
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
    eps = checks.require_positive_number("eps", eps)
    if isinstance(acts, tuple):
        return _sparse_batch_mono_scores(acts, emb, num_latents, eps, validate)
    acts = as_activations(checks.require_tensor("acts", acts), num_latents, validate)
    if validate:
        checks.require_finite("acts", acts)
    dtype = compute_dtype(acts, checks.require_tensor("emb", emb))
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
        # NaN/inf in acts or emb reach the pair weight or the numerator: keep them, never zero them
        kept = active | ~torch.isfinite(pair_weight) | ~torch.isfinite(numerator)
        scores = torch.where(kept, numerator / safe_denominator, torch.zeros_like(numerator))
    return BatchMonoScores(scores, active)


def _sparse_batch_mono_scores(
    acts: tuple, emb: object, num_latents: int | None, eps: float, validate: bool
) -> BatchMonoScores:
    entries = as_entries(acts, num_latents, validate)
    num_latents = checks.require_positive_int("num_latents", num_latents)
    emb = checks.require_tensor("emb", emb)
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
        if not validate:  # NaN/inf values may sit on inactive latents: make every score NaN then
            finite = torch.isfinite(entries.values.detach()).all()
            scores = scores + torch.where(finite, 0.0, torch.nan).to(scores.dtype)
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
    checks.require_choice("average", average, LOSS_AVERAGES)
    scores, active = batch_mono_scores(acts, emb, num_latents=num_latents, eps=eps, validate=validate)
    if average == "all":
        return 1.0 - scores.mean()
    return 1.0 - scores.sum() / active.sum().clamp_min(1)
