"""Sufficient statistics of the MonoScore: one pass, mergeable by sum/min/max.

For raw activations ``l_nk`` with per-latent minimum ``m_k`` and unit
embeddings ``ê_n``, the shifted activations ``a_nk = l_nk - m_k`` give (the
max-scaling of the min-max normalisation cancels in the ratio)::

    MS_k = (||V_k||^2 - v_k) / (u_k^2 - v_k)

The state holds the sums of the activations relative to a per-latent
reference ``r_k`` (the minimum of the first batch the stream saw, so it lies
in the data's range), ``c_nk = l_nk - r_k``, and ``d_k = m_k - r_k``::

    V_k = sum_n a_nk ê_n = S_k - d_k E        (S = sum_n c_n ê_n^T, E = sum_n ê_n)
    u_k = sum_n a_nk     = L_k - N d_k        (L = sum_n c_n)
    v_k = sum_n a_nk^2   = Q_k - 2 d_k L_k + N d_k^2   (Q = sum_n c_n^2)

so ``S (M, D)``, ``E (D,)``, ``L``, ``Q``, ``r``, ``min``, ``max`` ``(M,)`` and
``N`` are all a stream needs. Two states with the same reference merge by
sum, min and max, whatever the batching or the number of processes; moving a
state to another reference ``r'`` (``rebase``, ``e = r - r'``) is exact
algebra: ``S += e E``, ``L += N e``, ``Q += 2 e L + N e^2`` (old ``L``).

Numerics: because ``r_k`` lies in the data's range, ``|c_nk|`` and ``|d_k|``
are at most the latent's range, so a common offset of the activations costs
no digits (raw sums would cancel ``(offset / range)^2`` of them). The sums
are kept in float64; each dense batch's matmul and column sums run in
float32 (float64 for float64 input) on the batch shifted by its own minimum
``b_k`` (a no-op for ReLU-like latents, whose batch minimum is 0), and
``b_k - r_k`` is added back in float64. A batch whose range lies outside
``2^-k .. 2^k`` (``k`` a quarter of the dtype's exponent range) is also
divided by a power of two near its range, per latent, so its squares neither
overflow nor underflow; the sums are scaled back in float64, exactly.
Sparse batches are not shifted by their minimum (their implicit zeros would
have to be materialised): their values are shifted by ``r_k`` for a latent
listed in every row (so an offset cancels there as well); a latent with an
implicit zero has ``0`` in its range, so ``|r_k|`` is at most that range and
the shift is applied to the batch's ``E`` in float64. Their value sums are
float64 and only their matmul is float32.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace

import torch

from harmono.core import checks
from harmono.mono.inputs import (
    SparseActivations,
    inverse_norms,
    latent_order,
    num_rows,
    require_no_repeated_entries,
)

DEAD_POLICIES = ("nan", "zero")
CPU_BLOCK_ROWS = 32
"""Rows per block of the one-pass column statistics on the CPU (a block stays in cache)."""
FLUSH_ROWS = 2**16
"""Rows a stream accumulates in float32 before moving them into float64: one float32 matmul's worth."""
STATE_DTYPE = torch.float64
ROUNDING_SLACK = {
    torch.float32: 64 * torch.finfo(torch.float32).eps,
    torch.float64: 64 * torch.finfo(torch.float64).eps,
}
"""Relative rounding of the batch sums by matmul dtype: a pair weight below it times the sums' scale is 0."""
MAX_EXPONENT = {dtype: math.frexp(torch.finfo(dtype).max)[1] for dtype in (torch.float32, torch.float64)}
"""``e`` with ``2^(e-1) <= max < 2^e``: 128 for float32, 1024 for float64."""
SAFE_RANGE = {dtype: 2.0 ** (e // 4) for dtype, e in MAX_EXPONENT.items()}
"""A batch range above it, or below its inverse, is scaled by a power of two before its squares are summed."""


@dataclass
class MonoSums:
    """The mergeable state of the MonoScore of ``M`` latents with ``D``-dim embeddings.

    Attributes
    ----------
    act_emb : torch.Tensor
        ``(M, D)`` float64, ``S = sum_n (l_n - r) ê_n^T`` up to the last ``flush``.
    act_emb_recent : torch.Tensor
        ``(M, D)`` float32, the part of ``S`` added since: each float32
        batch's matmul accumulates into it in place (no ``(M, D)``
        temporary), and ``flush`` moves it into ``act_emb``.
    emb_sum : torch.Tensor
        ``(D,)`` float64, ``E = sum_n ê_n``.
    act_sum : torch.Tensor
        ``(M,)`` float64, ``L = sum_n (l_n - r)``.
    act_sq_sum : torch.Tensor
        ``(M,)`` float64, ``Q = sum_n (l_n - r)^2``.
    count : torch.Tensor
        ``()`` float64, ``N``.
    act_ref : torch.Tensor
        ``(M,)`` float64, the reference ``r``: the minimum of the first batch
        (0 before any sample). States merge once ``rebase`` gave them one
        reference (``MonoScore`` does so), which then merges by ``max``.
    act_min : torch.Tensor
        ``(M,)`` float64, per-latent minimum (``+inf`` before any sample).
    act_max : torch.Tensor
        ``(M,)`` float64, per-latent maximum (``-inf`` before any sample).
    float32_rows : torch.Tensor
        ``()`` float64, rows whose matmul ran in float32 (they set the
        rounding tolerance of the dead-latent test).
    """

    act_emb: torch.Tensor
    act_emb_recent: torch.Tensor
    emb_sum: torch.Tensor
    act_sum: torch.Tensor
    act_sq_sum: torch.Tensor
    count: torch.Tensor
    act_ref: torch.Tensor
    act_min: torch.Tensor
    act_max: torch.Tensor
    float32_rows: torch.Tensor

    @classmethod
    def empty(cls, num_latents: int, emb_dim: int, device: torch.device | str | None = None) -> MonoSums:
        """The state of an empty stream."""
        kw = {"dtype": STATE_DTYPE, "device": device}
        return cls(
            act_emb=torch.zeros(num_latents, emb_dim, **kw),
            act_emb_recent=torch.zeros(num_latents, emb_dim, dtype=torch.float32, device=device),
            emb_sum=torch.zeros(emb_dim, **kw),
            act_sum=torch.zeros(num_latents, **kw),
            act_sq_sum=torch.zeros(num_latents, **kw),
            count=torch.zeros((), **kw),
            act_ref=torch.zeros(num_latents, **kw),
            act_min=torch.full((num_latents,), torch.inf, **kw),
            act_max=torch.full((num_latents,), -torch.inf, **kw),
            float32_rows=torch.zeros((), **kw),
        )

    REDUCTIONS = {"act_min": "min", "act_max": "max", "act_ref": "max"}
    """How each state merges across batches and processes (all others: ``sum``)."""

    @classmethod
    def reduction(cls, name: str) -> str:
        """``"sum"``, ``"min"`` or ``"max"``: how the state ``name`` merges."""
        return cls.REDUCTIONS.get(name, "sum")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The state names, in a fixed order."""
        return tuple(f.name for f in fields(cls))

    def product_target(self, dtype: torch.dtype) -> torch.Tensor:
        """The ``(M, D)`` state a batch matmul in ``dtype`` accumulates into."""
        return self.act_emb if dtype == STATE_DTYPE else self.act_emb_recent

    def flush(self) -> None:
        """Move ``act_emb_recent`` into the float64 ``act_emb``."""
        self.act_emb.add_(self.act_emb_recent)
        self.act_emb_recent.zero_()


def merge_reference(first: MonoSums, second: MonoSums) -> torch.Tensor:
    """``(M,)`` reference two states merge at: ``second``'s, or ``first``'s if ``second`` saw no sample."""
    return torch.where(second.count > 0, second.act_ref, first.act_ref)


def rebase(sums: MonoSums, reference: torch.Tensor) -> MonoSums:
    """``sums`` moved to the reference ``reference (M,)``, as new tensors (``sums`` is left as is).

    With ``e = r - reference``: ``S += e E``, ``Q += 2 e L + N e^2``,
    ``L += N e`` (see the module docstring). Exact up to float64 rounding of
    terms no larger than the latent's range when both references lie in it.
    """
    shift = sums.act_ref - reference
    moved = replace(sums, act_ref=reference.clone())
    if not bool((shift != 0).any()):
        return moved
    n = sums.count
    return replace(
        moved,
        act_emb=sums.act_emb + torch.outer(shift, sums.emb_sum),
        act_sq_sum=sums.act_sq_sum + shift * (2 * sums.act_sum + n * shift),
        act_sum=sums.act_sum + n * shift,
    )


def accumulate(
    sums: MonoSums, acts: torch.Tensor | SparseActivations, emb: torch.Tensor, validate: bool
) -> None:
    """Add one batch to ``sums`` in place; on bad input, raise before anything changes.

    Parameters
    ----------
    sums : MonoSums
        The stream's state, updated in place.
    acts : torch.Tensor or SparseActivations
        Checked activations, dense ``(N, M)`` or sparse ``(N, k)`` pairs.
    emb : torch.Tensor
        ``(N, D)`` checked embeddings (any norm), in the compute dtype.
    validate : bool
        Raise on NaN/inf in dense ``acts`` (found from the column extremes,
        no extra pass), on NaN/inf or zero rows in ``emb`` (found from their
        norms) and on an index repeated within a row of sparse ``acts``
        (found from the sort the sparse product needs anyway).

    Notes
    -----
    Dense input costs one ``(M, N) x (N, D)`` matmul and one more pass over
    ``acts`` (two more and a copy when a batch minimum is not 0 or its range
    needs scaling, and an ``O(M D)`` update when the batch minimum differs
    from the reference); sparse input costs ``O(N k D)`` and ``O(N D)``.
    """
    with torch.no_grad():
        if isinstance(acts, SparseActivations):
            _accumulate_sparse(sums, acts, emb, validate)
        else:
            _accumulate_dense(sums, acts, emb, validate)
        if emb.dtype != STATE_DTYPE:
            sums.float32_rows.add_(num_rows(acts))


def _accumulate_dense(sums: MonoSums, acts: torch.Tensor, emb: torch.Tensor, validate: bool) -> None:
    n = acts.shape[0]
    x = acts.to(emb.dtype)
    low, high, col_sum, col_sq_sum = _column_stats(x)
    if validate and not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        checks.require_finite("acts", acts)
    emb_hat = emb * inverse_norms(emb, validate)[:, None]
    emb_sum = emb_hat.sum(dim=0).to(STATE_DTYPE)
    batch_min = low.to(STATE_DTYPE)
    _set_first_reference(sums, batch_min)
    offset = batch_min - sums.act_ref  # b - r: the batch's shift, seen from the reference
    spread = high - low
    scaled = (spread > SAFE_RANGE[x.dtype]) | ((spread > 0) & (spread < 1 / SAFE_RANGE[x.dtype]))
    shifted, moved, scaled = torch.stack([(low != 0).any(), (offset != 0).any(), scaled.any()]).tolist()
    # The float32 matmul and sums only ever see values >= 0 (x - b), at most the
    # batch range: an offset costs no digits, and their rounding stays relative to
    # the shifted activations (see scores_from_sums). b - r is added in float64.
    scale = _power_of_two_scale(spread) if scaled else None
    if shifted or scaled:
        x = x - low
        if scaled:
            x *= (1 / scale).to(x.dtype)
        _, _, col_sum, col_sq_sum = _column_stats(x)
        if scaled:
            col_sum *= scale
            col_sq_sum *= scale.square()
    if moved:
        col_sq_sum += offset * (2 * col_sum + n * offset)
        col_sum += n * offset
        sums.act_emb.addr_(offset, emb_sum)
    if scaled:
        sums.act_emb.add_((x.T @ emb_hat).to(STATE_DTYPE).mul_(scale[:, None]))
    else:
        sums.product_target(x.dtype).addmm_(x.T, emb_hat)
    sums.act_sum.add_(col_sum)
    sums.act_sq_sum.add_(col_sq_sum)
    sums.emb_sum.add_(emb_sum)
    sums.count.add_(n)
    torch.minimum(sums.act_min, batch_min, out=sums.act_min)
    torch.maximum(sums.act_max, high.to(STATE_DTYPE), out=sums.act_max)


def _set_first_reference(sums: MonoSums, batch_min: torch.Tensor) -> None:
    """Take ``batch_min (M,)`` as the reference of a state that has seen no sample (no host sync)."""
    sums.act_ref.copy_(torch.where(sums.count > 0, sums.act_ref, batch_min))


def _power_of_two_scale(spread: torch.Tensor) -> torch.Tensor:
    """``(M,)`` float64 powers of two in ``(spread / 2, spread]`` (1 where ``spread`` is 0 or not finite).

    Dividing by a power of two is exact (the result stays in the dtype's normal range).
    """
    limit = MAX_EXPONENT[spread.dtype] - 2  # 2^limit and 2^-limit are normal numbers
    _, exponent = torch.frexp(spread.to(STATE_DTYPE))
    exponent = (exponent - 1).clamp(-limit, limit)
    usable = torch.isfinite(spread) & (spread > 0)
    return torch.where(usable, torch.ldexp(torch.ones_like(exponent, dtype=STATE_DTYPE), exponent), 1.0)


def _column_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column min, max, sum and sum of squares of ``x (N, M)``, in one pass.

    The sums of a block of rows are taken in the dtype of ``x`` and added up
    in float64. On the CPU a block is ``CPU_BLOCK_ROWS`` rows, which stay in
    cache; elsewhere it is the whole batch.
    """
    rows = CPU_BLOCK_ROWS if x.device.type == "cpu" else x.shape[0]
    m = x.shape[1]
    low = torch.full((m,), torch.inf, dtype=x.dtype, device=x.device)
    high = torch.full((m,), -torch.inf, dtype=x.dtype, device=x.device)
    col_sum = torch.zeros(m, dtype=STATE_DTYPE, device=x.device)
    col_sq_sum = torch.zeros(m, dtype=STATE_DTYPE, device=x.device)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        torch.minimum(low, block.amin(dim=0), out=low)
        torch.maximum(high, block.amax(dim=0), out=high)
        col_sum += block.sum(dim=0)
        col_sq_sum += block.square().sum(dim=0)
    return low, high, col_sum, col_sq_sum


def _accumulate_sparse(sums: MonoSums, acts: SparseActivations, emb: torch.Tensor, validate: bool) -> None:
    n, k = acts.values.shape
    num_latents = sums.act_sum.shape[0]
    latent = acts.indices.reshape(-1)
    sorted_latent, order = latent_order(latent, num_latents)
    sorted_row = torch.arange(n, device=latent.device).repeat_interleave(k).index_select(0, order)
    if validate:
        require_no_repeated_entries(sorted_latent, sorted_row)
    value = acts.values.to(emb.dtype).reshape(-1)
    listed = torch.bincount(latent, minlength=num_latents)
    low, high = _sparse_extremes(latent, value, listed, n)
    _set_first_reference(sums, low.to(STATE_DTYPE))
    reference = sums.act_ref
    # A latent listed in every row is shifted by r in its values; one with an
    # implicit zero keeps its values, and r E_batch is taken off in float64 below.
    full = listed == n
    value64 = value.to(STATE_DTYPE)
    centred = value64 - reference.index_select(0, latent)
    matmul_value = torch.where(full.index_select(0, latent), centred, value64).to(value.dtype)
    crow = torch.zeros(num_latents + 1, dtype=torch.long, device=latent.device)
    crow[1:] = listed.cumsum(0)
    inv_norm = inverse_norms(emb, validate)
    # l_n ê_n = (l_n / |e_n|) e_n: scale the N k values instead of the N D embeddings
    scaled = matmul_value.index_select(0, order) * inv_norm.index_select(0, sorted_row)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        by_latent = torch.sparse_csr_tensor(
            crow, sorted_row, scaled, (num_latents, n), check_invariants=False
        )
        sums.product_target(value.dtype).addmm_(by_latent, emb)
    emb_sum = (inv_norm @ emb).to(STATE_DTYPE)
    implicit_shift = torch.where(full, 0.0, reference)  # the rows that do not list a latent hold 0 - r
    if bool((implicit_shift != 0).any()):
        moved = implicit_shift.nonzero().squeeze(1)
        sums.act_emb.index_add_(0, moved, torch.outer(-implicit_shift[moved], emb_sum))
    unlisted = n - listed
    sums.act_sum.add_(torch.bincount(latent, weights=centred, minlength=num_latents) - unlisted * reference)
    sums.act_sq_sum.add_(
        torch.bincount(latent, weights=centred.square(), minlength=num_latents)
        + unlisted * reference.square()
    )
    sums.emb_sum.add_(emb_sum)
    sums.count.add_(n)
    torch.minimum(sums.act_min, low.to(STATE_DTYPE), out=sums.act_min)
    torch.maximum(sums.act_max, high.to(STATE_DTYPE), out=sums.act_max)


def _sparse_extremes(
    latent: torch.Tensor, value: torch.Tensor, listed: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-latent ``(M,)`` min and max of a sparse batch: listed values and the implicit zeros."""
    num_latents = listed.shape[0]
    has_implicit_zero = listed < n  # a latent some row does not list is 0 there
    high = _scatter_extreme(latent, value, num_latents, "amax")
    high = torch.where(has_implicit_zero, high.clamp_min(0.0), high)
    if bool(has_implicit_zero.all()) and float(value.min()) >= 0:
        return torch.zeros_like(high), high  # the common TopK case: every minimum is an implicit 0
    low = _scatter_extreme(latent, value, num_latents, "amin")
    return torch.where(has_implicit_zero, low.clamp_max(0.0), low), high


def _scatter_extreme(
    latent: torch.Tensor, value: torch.Tensor, num_latents: int, reduce: str
) -> torch.Tensor:
    """Per-latent min or max of the listed values (``+-inf`` for a latent never listed)."""
    start = torch.inf if reduce == "amin" else -torch.inf
    out = torch.full((num_latents,), start, dtype=value.dtype, device=value.device)
    return out.scatter_reduce_(0, latent, value, reduce=reduce, include_self=True)


def _shifted_sq_norms(sums: MonoSums, shift: torch.Tensor, rows: int = 128) -> torch.Tensor:
    """``(M,)`` ``|S_k - shift_k E|^2`` in float64, a block of latents at a time (no ``(M, D)`` temporary)."""
    out = torch.empty_like(shift)
    for start in range(0, shift.shape[0], rows):
        block = sums.act_emb[start : start + rows] + sums.act_emb_recent[start : start + rows]
        block.addr_(shift[start : start + rows], sums.emb_sum, alpha=-1)
        out[start : start + rows] = block.square().sum(dim=1)
    return out


def scores_from_sums(sums: MonoSums, dead: str) -> torch.Tensor:
    """``(M,)`` float64 MonoScores from a stream's state.

    A latent is dead (NaN or 0 by ``dead``) when it is constant or fewer than
    two samples lie above its minimum: its pair weight
    ``Z = u^2 - v = sum_{n != m} a_n a_m`` (``a = l - min``) is zero up to the
    rounding of the sums. That rounding is ``64 eps32 (2 u^2 + v)`` for the
    float32 batch sums, which only ever add values ``>= 0`` that are at most
    ``a`` (dense batches are shifted by their minimum), plus ``64 eps64`` of
    the float64 sums (relative to the reference ``r``) that the final shift
    by ``min - r`` cancels. With float32
    batches, a latent whose mass above the minimum lies all but a ~1e-5
    share in one sample therefore counts as dead; float64 streams resolve
    ~1e-14.
    """
    checks.require_choice("dead", dead, DEAD_POLICIES)
    if float(sums.count) == 0:
        raise ValueError("no sample seen: MonoScore needs at least one batch of activations")
    n, shift = sums.count, sums.act_min - sums.act_ref
    u = sums.act_sum - n * shift
    v = sums.act_sq_sum - shift * (2 * sums.act_sum - n * shift)
    numerator = _shifted_sq_norms(sums, shift) - v
    pair_weight = u * u - v
    raw_u = sums.act_sum.abs() + n * shift.abs()
    raw_v = sums.act_sq_sum + shift.abs() * (2 * sums.act_sum.abs() + n * shift.abs())
    rounding = ROUNDING_SLACK[torch.float64] * (raw_v + 2 * u.abs() * raw_u)
    if float(sums.float32_rows) > 0:
        rounding = rounding + ROUNDING_SLACK[torch.float32] * (2 * u * u + v.abs())
    alive = (sums.act_max > sums.act_min) & (pair_weight > rounding)
    score = numerator / torch.where(alive, pair_weight, torch.ones_like(pair_weight))
    fill = torch.nan if dead == "nan" else 0.0
    return torch.where(alive, score, torch.full_like(score, fill))
