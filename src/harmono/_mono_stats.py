"""Sufficient statistics of the MonoScore: one pass, mergeable by sum/min/max.

For raw activations ``l_nk`` with per-latent minimum ``m_k`` and unit
embeddings ``ê_n``, the shifted activations ``a_nk = l_nk - m_k`` give (the
max-scaling of the min-max normalisation cancels in the ratio)::

    MS_k = (||V_k||^2 - v_k) / (u_k^2 - v_k)
    V_k = sum_n a_nk ê_n = S_k - m_k E        (S = sum_n ê_n l_n^T, E = sum_n ê_n)
    u_k = sum_n a_nk     = L_k - N m_k        (L = sum_n l_n)
    v_k = sum_n a_nk^2   = Q_k - 2 m_k L_k + N m_k^2   (Q = sum_n l_n^2)

so ``S (D, M)``, ``E (D,)``, ``L``, ``Q``, ``min``, ``max`` ``(M,)`` and ``N``
are all a stream needs: sums add and extremes take the min/max, whatever the
batching or the number of processes.

Numerics: the sums are kept in float64. Each batch's matmul runs in float32
(float64 for float64 input) on activations shifted by the batch's own minimum
(never negative), and the shift is added back in float64, so a large offset
of a latent costs no float32 digits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from harmono import _checks

DEAD_POLICIES = ("nan", "zero")
STATE_DTYPE = torch.float64
ROUNDING_SLACK = 1e3 * torch.finfo(torch.float64).eps
"""Relative rounding slack of the float64 sums: a pair weight below it times the sums' scale is zero."""


class SparseActivations(NamedTuple):
    """TopK-style sparse activations: row ``n`` holds ``values[n, j]`` at latent ``indices[n, j]``.

    Every latent a row does not list is 0 in that row. ``torch.topk`` returns
    this layout, so ``latents.topk(k)`` can be passed as is.

    Attributes
    ----------
    values : torch.Tensor
        ``(N, k)`` floating activations.
    indices : torch.Tensor
        ``(N, k)`` integer latent indices in ``[0, M)``, distinct within a row.
    """

    values: torch.Tensor
    indices: torch.Tensor


Activations = torch.Tensor | SparseActivations | tuple[torch.Tensor, torch.Tensor]


def as_activations(acts: object, num_latents: int | None, validate: bool) -> torch.Tensor | SparseActivations:
    """Check dense ``(N, M)`` or sparse ``(values, indices)`` activations.

    Parameters
    ----------
    acts : torch.Tensor or tuple of two tensors
        Dense ``(N, M)`` activations or ``(values, indices)``, both ``(N, k)``.
    num_latents : int or None
        ``M``. Required for sparse input; checked against dense input.
    validate : bool
        Also read the data: NaN/inf, index range, distinct indices per row.

    Returns
    -------
    torch.Tensor or SparseActivations
    """
    if isinstance(acts, tuple):
        return _as_sparse(acts, num_latents, validate)
    acts = _checks.require_tensor("acts", acts)
    _checks.require_ndim("acts", acts, 2, "(N, M)")
    _checks.require_floating("acts", acts)
    _checks.require_non_empty("acts", acts, "(N, M) with N >= 1 and M >= 1")
    if num_latents is not None and acts.shape[1] != num_latents:
        raise ValueError(
            f"acts must have {num_latents} latents (shape (N, {num_latents})), got {tuple(acts.shape)}"
        )
    if validate:
        _checks.require_finite("acts", acts)
    return acts


def _as_sparse(acts: tuple, num_latents: int | None, validate: bool) -> SparseActivations:
    if len(acts) != 2:
        raise ValueError(f"sparse acts must be a pair (values, indices), got a tuple of {len(acts)} items")
    values = _checks.require_tensor("acts values", acts[0])
    indices = _checks.require_tensor("acts indices", acts[1])
    if num_latents is None:
        raise ValueError("sparse acts (values, indices) need num_latents: the number of latents M")
    _checks.require_ndim("acts values", values, 2, "(N, k)")
    _checks.require_floating("acts values", values)
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise ValueError(
            f"acts indices must be an integer tensor (e.g. torch.long), got dtype {indices.dtype}"
        )
    if indices.shape != values.shape:
        raise ValueError(
            f"acts indices must have the shape of values {tuple(values.shape)}, got {tuple(indices.shape)}"
        )
    if indices.device != values.device:
        raise ValueError(
            f"acts values and indices must be on one device, got {values.device} and {indices.device}"
        )
    _checks.require_non_empty("acts values", values, "(N, k) with N >= 1 and k >= 1")
    if values.shape[1] > num_latents:
        raise ValueError(
            f"acts lists k = {values.shape[1]} latents per row, more than num_latents = {num_latents}"
        )
    if validate:
        _checks.require_finite("acts values", values)
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= num_latents:
            raise ValueError(
                f"acts indices must lie in [0, {num_latents - 1}] (num_latents = {num_latents}), "
                f"got values in [{low}, {high}]"
            )
        ordered = indices.sort(dim=1).values
        repeats = int((ordered[:, 1:] == ordered[:, :-1]).any(dim=1).sum())
        if repeats:
            raise ValueError(
                f"acts indices must be distinct within a row, got {repeats} row(s) with a repeated index"
            )
    return SparseActivations(values, indices.long())


def values_of(acts: torch.Tensor | SparseActivations) -> torch.Tensor:
    """The value tensor of checked activations: ``(N, M)`` dense or ``(N, k)`` sparse."""
    return acts.values if isinstance(acts, SparseActivations) else acts


def num_rows(acts: torch.Tensor | SparseActivations) -> int:
    """``N`` of checked activations."""
    return values_of(acts).shape[0]


def unit_embeddings(
    emb: object, n: int, emb_dim: int | None, validate: bool, dtype: torch.dtype
) -> torch.Tensor:
    """Check ``emb (N, D)`` and return ``ê = emb / |emb|`` row-wise in ``dtype``.

    A zero embedding has no direction (its self-similarity would be 0, not 1):
    with ``validate`` it raises.
    """
    emb = _checks.require_tensor("emb", emb)
    _checks.require_ndim("emb", emb, 2, "(N, D)")
    _checks.require_floating("emb", emb)
    _checks.require_non_empty("emb", emb, "(N, D) with N >= 1 and D >= 1")
    if emb.shape[0] != n:
        raise ValueError(f"emb must have one row per sample of acts (N = {n}), got shape {tuple(emb.shape)}")
    if emb_dim is not None and emb.shape[1] != emb_dim:
        raise ValueError(f"emb must have {emb_dim} features (shape (N, {emb_dim})), got {tuple(emb.shape)}")
    if validate:
        _checks.require_finite("emb", emb)
        _checks.require_nonzero_rows("emb", emb, "the cosine similarity")
    emb = emb.to(dtype)
    norms = torch.linalg.vector_norm(emb, dim=1, keepdim=True)
    return emb / norms.clamp_min(torch.finfo(dtype).tiny)


@dataclass
class MonoSums:
    """The mergeable state of the MonoScore of ``M`` latents with ``D``-dim embeddings.

    Attributes
    ----------
    emb_act : torch.Tensor
        ``(D, M)`` float64, ``S = sum_n ê_n l_n^T``.
    emb_sum : torch.Tensor
        ``(D,)`` float64, ``E = sum_n ê_n``.
    act_sum : torch.Tensor
        ``(M,)`` float64, ``L = sum_n l_n``.
    act_sq_sum : torch.Tensor
        ``(M,)`` float64, ``Q = sum_n l_n^2``.
    count : torch.Tensor
        ``()`` float64, ``N``.
    act_min : torch.Tensor
        ``(M,)`` float64, per-latent minimum (``+inf`` before any sample).
    act_max : torch.Tensor
        ``(M,)`` float64, per-latent maximum (``-inf`` before any sample).
    """

    emb_act: torch.Tensor
    emb_sum: torch.Tensor
    act_sum: torch.Tensor
    act_sq_sum: torch.Tensor
    count: torch.Tensor
    act_min: torch.Tensor
    act_max: torch.Tensor

    @classmethod
    def empty(cls, num_latents: int, emb_dim: int, device: torch.device | str | None = None) -> MonoSums:
        """The state of an empty stream."""
        kw = {"dtype": STATE_DTYPE, "device": device}
        return cls(
            emb_act=torch.zeros(emb_dim, num_latents, **kw),
            emb_sum=torch.zeros(emb_dim, **kw),
            act_sum=torch.zeros(num_latents, **kw),
            act_sq_sum=torch.zeros(num_latents, **kw),
            count=torch.zeros((), **kw),
            act_min=torch.full((num_latents,), torch.inf, **kw),
            act_max=torch.full((num_latents,), -torch.inf, **kw),
        )

    REDUCTIONS = {"act_min": "min", "act_max": "max"}
    """How each state merges across batches and processes (all others: ``sum``)."""

    @classmethod
    def reduction(cls, name: str) -> str:
        """``"sum"``, ``"min"`` or ``"max"``: how the state ``name`` merges."""
        return cls.REDUCTIONS.get(name, "sum")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The state names, in a fixed order."""
        return tuple(f.name for f in fields(cls))


def batch_sums(acts: torch.Tensor | SparseActivations, emb_hat: torch.Tensor, num_latents: int) -> MonoSums:
    """The MonoScore state of one batch.

    Parameters
    ----------
    acts : torch.Tensor or SparseActivations
        Checked activations, dense ``(N, M)`` or sparse ``(N, k)`` pairs.
    emb_hat : torch.Tensor
        ``(N, D)`` unit embeddings in the compute dtype.
    num_latents : int
        ``M``.

    Returns
    -------
    MonoSums
        Costs one ``(D, N) x (N, M)`` matmul for dense input and
        ``O(N k D)`` for sparse input.
    """
    with torch.no_grad():
        if isinstance(acts, SparseActivations):
            return _sparse_batch_sums(acts, emb_hat, num_latents)
        return _dense_batch_sums(acts, emb_hat)


def _dense_batch_sums(acts: torch.Tensor, emb_hat: torch.Tensor) -> MonoSums:
    n = acts.shape[0]
    low, high = torch.aminmax(acts, dim=0)
    shifted = acts.to(emb_hat.dtype) - low.to(emb_hat.dtype)  # >= 0: the matmul loses no digit to an offset
    emb_shifted = emb_hat.T @ shifted
    shifted_sum = shifted.sum(dim=0, dtype=STATE_DTYPE)
    shifted_sq_sum = shifted.square_().sum(dim=0, dtype=STATE_DTYPE)
    low = low.to(STATE_DTYPE)
    emb_sum = emb_hat.sum(dim=0, dtype=STATE_DTYPE)
    return MonoSums(
        emb_act=torch.addr(emb_shifted.to(STATE_DTYPE), emb_sum, low),
        emb_sum=emb_sum,
        act_sum=shifted_sum + n * low,
        act_sq_sum=shifted_sq_sum + low * (2 * shifted_sum + n * low),
        count=torch.tensor(float(n), dtype=STATE_DTYPE, device=acts.device),
        act_min=low,
        act_max=high.to(STATE_DTYPE),
    )


def _sparse_batch_sums(acts: SparseActivations, emb_hat: torch.Tensor, num_latents: int) -> MonoSums:
    n, k = acts.values.shape
    device = acts.values.device
    latent = acts.indices.reshape(-1)
    value = acts.values.reshape(-1).to(emb_hat.dtype)
    listed = torch.bincount(latent, minlength=num_latents)
    low = _scatter_extreme(latent, value, num_latents, "amin")
    high = _scatter_extreme(latent, value, num_latents, "amax")
    has_implicit_zero = listed < n
    zero = torch.zeros((), dtype=low.dtype, device=device)
    low = torch.where(has_implicit_zero, torch.minimum(low, zero), low)
    high = torch.where(has_implicit_zero, torch.maximum(high, zero), high)
    value64 = value.to(STATE_DTYPE)
    act_sum = torch.zeros(num_latents, dtype=STATE_DTYPE, device=device).index_add_(0, latent, value64)
    act_sq_sum = torch.zeros(num_latents, dtype=STATE_DTYPE, device=device).index_add_(
        0, latent, value64.square()
    )
    return MonoSums(
        emb_act=_sparse_emb_act(latent, value, n, k, emb_hat, num_latents).to(STATE_DTYPE),
        emb_sum=emb_hat.sum(dim=0, dtype=STATE_DTYPE),
        act_sum=act_sum,
        act_sq_sum=act_sq_sum,
        count=torch.tensor(float(n), dtype=STATE_DTYPE, device=device),
        act_min=low.to(STATE_DTYPE),
        act_max=high.to(STATE_DTYPE),
    )


def _scatter_extreme(
    latent: torch.Tensor, value: torch.Tensor, num_latents: int, reduce: str
) -> torch.Tensor:
    """Per-latent min or max of the listed values (``+-inf`` for a latent never listed)."""
    start = torch.inf if reduce == "amin" else -torch.inf
    out = torch.full((num_latents,), start, dtype=value.dtype, device=value.device)
    return out.scatter_reduce_(0, latent, value, reduce=reduce, include_self=True)


def _sparse_emb_act(
    latent: torch.Tensor, value: torch.Tensor, n: int, k: int, emb_hat: torch.Tensor, num_latents: int
) -> torch.Tensor:
    """``(D, M)`` ``sum_n ê_n l_n^T`` from ``N k`` listed values: a CSR ``(M, N)`` times ``ê (N, D)``."""
    order = torch.argsort(latent, stable=True)
    row_of_entry = torch.arange(n, device=latent.device).repeat_interleave(k)
    crow = torch.zeros(num_latents + 1, dtype=torch.long, device=latent.device)
    crow[1:] = torch.bincount(latent, minlength=num_latents).cumsum(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        by_latent = torch.sparse_csr_tensor(
            crow, row_of_entry[order], value[order], (num_latents, n), check_invariants=False
        )
        return (by_latent @ emb_hat).T


def merge_sums(a: MonoSums, b: MonoSums) -> MonoSums:
    """The state of the concatenation of two streams."""
    merged = {}
    for name in MonoSums.names():
        x, y = getattr(a, name), getattr(b, name)
        how = MonoSums.reduction(name)
        merged[name] = torch.minimum(x, y) if how == "min" else torch.maximum(x, y) if how == "max" else x + y
    return MonoSums(**merged)


def scores_from_sums(sums: MonoSums, dead: str) -> torch.Tensor:
    """``(M,)`` float64 MonoScores from a stream's state.

    A latent is dead (NaN or 0 by ``dead``) when it is constant or fewer than
    two samples lie above its minimum: its pair weight
    ``sum_{n<m} a_n a_m`` is zero, up to the float64 rounding of the sums.
    """
    _checks.require_choice("dead", dead, DEAD_POLICIES)
    if float(sums.count) == 0:
        raise ValueError("no sample seen: MonoScore needs at least one batch of activations")
    n, low = sums.count, sums.act_min
    u = sums.act_sum - n * low
    v = sums.act_sq_sum - low * (2 * sums.act_sum - n * low)
    shifted_emb_act = torch.addr(sums.emb_act, sums.emb_sum, low, alpha=-1)
    numerator = shifted_emb_act.square().sum(dim=0) - v
    pair_weight = u * u - v
    scale_u = sums.act_sum.abs() + n * low.abs()
    scale_v = sums.act_sq_sum + low.abs() * (2 * sums.act_sum.abs() + n * low.abs())
    rounding = ROUNDING_SLACK * (scale_v + 2 * u.abs() * scale_u)
    alive = (sums.act_max > low) & (pair_weight > rounding)
    score = numerator / torch.where(alive, pair_weight, torch.ones_like(pair_weight))
    fill = torch.nan if dead == "nan" else 0.0
    return torch.where(alive, score, torch.full_like(score, fill))
