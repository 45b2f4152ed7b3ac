"""The batch MonoScore of sparse activations, with a backward pass that only touches listed entries.

The dense batch score (``harmono.mono.batch_mono_scores``) costs a
``(D, B) x (B, M)`` product forward and another backward, as much as an
SAE's encoder. For a code with ``nnz`` listed entries (``B k`` for TopK)
this module costs ``O(nnz D + B D + M)`` both ways, and gives the same scores
and the same gradients with respect to the listed values.

With batch min ``low_k`` and max ``high_k`` (the implicit zeros of a latent
some row does not list count), ``r_k = 1 / (high_k - low_k + eps)`` and
``ã_nk = (a_nk - low_k) r_k``::

    W_k = sum_n ã_nk ê_n = r_k (P_k - low_k E)      P_k = sum_listed a_nk ê_n,  E = sum_n ê_n
    |W_k|^2 = r_k^2 (|P_k|^2 - 2 low_k P_k.E + low_k^2 |E|^2)
    |P_k|^2 = sum_listed a_nk (P_k . ê_n)           P_k.E = sum_listed a_nk (ê_n . E)

(for a latent listed in every row, ``a_nk - low_k`` replaces ``a_nk`` and 0
replaces ``low_k``: the same sums without the cancellation of a large
shift).

``P`` is one ``embedding_bag`` over the entries grouped by latent, and the
per-entry products ``P_k . ê_n`` are that bag's per-sample-weight gradient:
only they (``(nnz,)``) are kept for the backward pass, not ``P (M, D)``.
``u_k``, ``v_k`` and the pair weight add the implicit rows' constant
``-low_k r_k`` to the listed sums.

Backward, with ``g_k = ∂L/∂MS_k`` (0 for inactive latents), ``α_k = g_k / (Z_k + eps)``
and ``β_k = -g_k N_k / (Z_k + eps)^2``: ``∂L/∂ã_nk = α_k (W_k . ê_n - ã_nk) +
β_k (u_k - ã_nk)``, times ``r_k`` for a listed value; its sums over all rows
(``Σ_n`` and ``Σ_n ã_nk``, closed forms in ``W_k . E``, ``|W_k|^2``, ``u_k``,
``v_k``) give the gradients of ``low_k`` and ``high_k``, shared equally among
the entries tied at the extreme, implicit zeros included (as ``amin`` /
``amax`` share them; an implicit zero's share is dropped, as a dense code
built by scattering the listed values drops it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from harmono.mono.inputs import SparseEntries, latent_order, require_no_repeated_entries


def sparse_batch_scores(
    entries: SparseEntries, emb_hat: torch.Tensor, num_latents: int, eps: float, validate: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-latent batch MonoScore of sparse activations; differentiable in ``entries.values``.

    Parameters
    ----------
    entries : SparseEntries
        Checked entries; ``values (nnz,)`` in the compute dtype.
    emb_hat : torch.Tensor
        ``(N, D)`` unit embeddings in the compute dtype (no gradient reaches them).
    num_latents : int
        ``M``.
    eps : float
        The MonoLoss ``eps`` (see ``harmono.mono.batch_mono_scores``).
    validate : bool
        Raise on a repeated (row, latent) entry (found from the sort by latent).

    Returns
    -------
    tuple of torch.Tensor
        ``scores (M,)`` (0 for inactive latents) and ``active (M,)`` bool.
    """
    values, rows, columns = entries.values, entries.rows, entries.columns
    return _SparseBatchScores.apply(values, rows, columns, emb_hat, num_latents, eps, validate)


def _sum_by_latent(columns: torch.Tensor, weights: torch.Tensor, num_latents: int) -> torch.Tensor:
    return weights.new_zeros(num_latents).index_add_(0, columns, weights)


def _extreme(
    columns: torch.Tensor, values: torch.Tensor, implicit: torch.Tensor, reduce: str
) -> torch.Tensor:
    """Per-latent ``(M,)`` batch min or max: listed values and, where ``implicit``, a 0."""
    out = values.new_zeros(implicit.shape[0])
    out.scatter_reduce_(0, columns, values, reduce=reduce, include_self=False)
    bound = out.clamp_max(0.0) if reduce == "amin" else out.clamp_min(0.0)
    return torch.where(implicit, bound, out)


def _share_at(extreme, values, columns, implicit_count, num_latents):
    """``(nnz,)`` 1 / (number of entries tied at the extreme) for each listed entry at it, else 0."""
    at = values == extreme[columns]
    ties = _sum_by_latent(columns, at.to(values.dtype), num_latents)
    ties = ties + torch.where(extreme == 0, implicit_count, torch.zeros_like(implicit_count))
    return at / ties.clamp_min(1.0)[columns]


def _bag_dots(
    rows: torch.Tensor, weights: torch.Tensor, emb_hat: torch.Tensor, starts: torch.Tensor
) -> torch.Tensor:
    """``(nnz,)`` ``P_k . ê_n`` per entry, ``P_k = Σ weights ê_rows`` over latent ``k``'s bag.

    ``P`` is an ``embedding_bag`` over the entries grouped by latent, and the
    products are the gradient of ``|P|^2 / 2`` with respect to the bag's
    per-sample weights, which ``embedding_bag`` computes entry by entry.
    """
    if torch.is_inference_mode_enabled():  # inference tensors cannot enter an autograd graph
        with torch.inference_mode(False):
            return _bag_dots(rows.clone(), weights.clone(), emb_hat.clone(), starts.clone())
    with torch.enable_grad():
        weights = weights.detach().requires_grad_(True)
        projected = F.embedding_bag(rows, emb_hat, starts, mode="sum", per_sample_weights=weights)
        return torch.autograd.grad(projected, weights, grad_outputs=projected.detach())[0]


class _SparseBatchScores(torch.autograd.Function):
    """Batch MonoScore of ``(values, rows, columns)`` entries; see the module docstring."""

    @staticmethod
    def forward(ctx, values, rows, columns, emb_hat, num_latents, eps, validate):
        n, m = emb_hat.shape[0], num_latents
        order = latent_order(columns, m)[1]
        columns, rows, values = columns[order], rows[order], values[order]
        if validate:
            require_no_repeated_entries(columns, rows)
        listed = torch.bincount(columns, minlength=m)
        implicit_count = (n - listed).to(values.dtype)
        low = _extreme(columns, values, listed < n, "amin")
        high = _extreme(columns, values, listed < n, "amax")
        scale = 1.0 / (high - low + eps)
        # A latent listed in every row is shifted in the bag itself (no cancellation in
        # P - low E); the others keep low <= 0 <= high, so |low r| <= 1.
        shift = torch.where(listed == n, low, 0.0)
        remaining_low = low - shift
        weights = values - shift[columns]
        emb_hat = emb_hat.detach()
        emb_total = emb_hat.sum(dim=0)
        along_total = emb_hat @ emb_total  # ê_n . E
        dots = _bag_dots(rows, weights, emb_hat, listed.cumsum(0) - listed)
        p_sq = _sum_by_latent(columns, weights * dots, m)
        p_total = _sum_by_latent(columns, weights * along_total[rows], m)
        total_sq = emb_total @ emb_total
        w_sq = scale.square() * (p_sq - 2 * remaining_low * p_total + remaining_low.square() * total_sq)
        normed = (values - low[columns]) * scale[columns]
        implicit_value = -low * scale
        u = _sum_by_latent(columns, normed, m) + implicit_count * implicit_value
        v = _sum_by_latent(columns, normed.square(), m) + implicit_count * implicit_value.square()
        # (u^2 - v) / 2 as a sum of non-negative terms: exactly 0 for a single active sample
        pair = 0.5 * (
            _sum_by_latent(columns, normed * (u[columns] - normed), m)
            + implicit_count * implicit_value * (u - implicit_value)
        )
        numerator = 0.5 * (w_sq - v)
        active = pair > eps
        scores = torch.where(active, numerator / torch.where(active, pair + eps, 1.0), 0.0)
        ctx.save_for_backward(
            order, rows, columns, values, dots, along_total, implicit_count, low, remaining_low,
            high, scale, p_total, total_sq, w_sq, normed, u, v, pair, numerator, active,
        )  # fmt: skip
        ctx.eps, ctx.n = eps, n
        ctx.mark_non_differentiable(active)
        return scores, active

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_scores, _grad_active):
        saved = ctx.saved_tensors
        order, rows, columns, values, dots, along_total, implicit_count = saved[:7]
        low, remaining_low, high, scale, p_total, total_sq, w_sq, normed, u, v, pair, numerator, active = (
            saved[7:]
        )
        m = low.shape[0]
        g = torch.where(active, grad_scores, 0.0)
        denominator = pair + ctx.eps
        alpha = g / denominator
        beta = -g * numerator / denominator.square()
        w_dot = scale[columns] * (dots - remaining_low[columns] * along_total[rows])  # W_k . ê_n
        per_entry = alpha[columns] * (w_dot - normed) + beta[columns] * (u[columns] - normed)
        w_total = scale * (p_total - remaining_low * total_sq)  # W_k . E
        sum_all = alpha * (w_total - u) + beta * (ctx.n - 1) * u
        sum_weighted = alpha * (w_sq - v) + beta * (u.square() - v)
        grad_low = scale * (sum_weighted - sum_all)
        grad_high = -scale * sum_weighted
        grad = (
            scale[columns] * per_entry
            + grad_low[columns] * _share_at(low, values, columns, implicit_count, m)
            + grad_high[columns] * _share_at(high, values, columns, implicit_count, m)
        )
        grad_values = torch.empty_like(grad).index_copy_(0, order, grad)
        return grad_values, None, None, None, None, None, None
