"""Sufficient statistics of the MonoScore: one pass, mergeable by sum/min/max.

For raw activations ``l_nk`` with per-latent minimum ``m_k`` and unit
embeddings ``ê_n``, the shifted activations ``a_nk = l_nk - m_k`` give (the
max-scaling of the min-max normalisation cancels in the ratio)::

    MS_k = (||V_k||^2 - v_k) / (u_k^2 - v_k)
    V_k = sum_n a_nk ê_n = S_k - m_k E        (S = sum_n l_n ê_n^T, E = sum_n ê_n)
    u_k = sum_n a_nk     = L_k - N m_k        (L = sum_n l_n)
    v_k = sum_n a_nk^2   = Q_k - 2 m_k L_k + N m_k^2   (Q = sum_n l_n^2)

so ``S (M, D)``, ``E (D,)``, ``L``, ``Q``, ``min``, ``max`` ``(M,)`` and ``N``
are all a stream needs: sums add and extremes take the min/max, whatever the
batching or the number of processes.

Numerics: the sums are kept in float64; each dense batch's matmul and
column sums run in float32 (float64 for float64 input) on the batch shifted
by its own minimum (a no-op for ReLU-like latents, whose batch minimum is 0),
and the shift is added back in float64, so an offset costs no digits. Sparse
batches are not shifted (their implicit zeros would have to be
materialised); their value sums are float64 and only their matmul is float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from harmono import _checks
from harmono._dtypes import compute_dtype

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


class SparseEntries(NamedTuple):
    """Activations listed entry by entry: row ``rows[j]`` holds ``values[j]`` at latent ``columns[j]``.

    Every (row, latent) pair not listed is 0. Rows may list different numbers
    of latents (BatchTopK codes, the nonzeros of ReLU latents). The entries
    come in row-major order (``rows`` non-decreasing, as ``nonzero()``
    returns them) and a row lists a latent at most once.

    Attributes
    ----------
    values : torch.Tensor
        ``(nnz,)`` floating activations.
    rows : torch.Tensor
        ``(nnz,)`` integer rows in ``[0, num_rows)``, non-decreasing.
    columns : torch.Tensor
        ``(nnz,)`` integer latent indices in ``[0, M)``.
    num_rows : int
        ``N``, the rows of the batch (a row may list nothing).
    """

    values: torch.Tensor
    rows: torch.Tensor
    columns: torch.Tensor
    num_rows: int


Activations = torch.Tensor | SparseActivations | SparseEntries | tuple[torch.Tensor, torch.Tensor]


def as_activations(acts: object, num_latents: int | None, validate: bool) -> torch.Tensor | SparseActivations:
    """Check dense ``(N, M)`` or sparse ``(values, indices)`` activations.

    Parameters
    ----------
    acts : torch.Tensor or tuple of two tensors
        Dense ``(N, M)`` activations or ``(values, indices)``, both ``(N, k)``.
    num_latents : int or None
        ``M``. Required for sparse input; checked against dense input.
    validate : bool
        For sparse input, also read the data: NaN/inf values and the index
        range. Dense values and repeated sparse indices are not checked here:
        callers check them in a pass they make anyway (see ``accumulate``) or
        with ``require_finite`` / ``require_distinct_per_row``.

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
    return acts


def _as_sparse(acts: tuple, num_latents: int | None, validate: bool) -> SparseActivations:
    if len(acts) != 2:
        raise ValueError(f"sparse acts must be a pair (values, indices), got a tuple of {len(acts)} items")
    values = _checks.require_tensor("acts values", acts[0])
    indices = _checks.require_tensor("acts indices", acts[1])
    if num_latents is None:
        raise ValueError("sparse acts (values, indices) need num_latents: the number of latents M")
    num_latents = _checks.require_positive_int("num_latents", num_latents)
    _checks.require_ndim("acts values", values, 2, "(N, k)")
    _checks.require_floating("acts values", values)
    _checks.require_integer("acts indices", indices)
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
        _require_index_range("acts indices", indices, num_latents, f" (num_latents = {num_latents})")
    return SparseActivations(values, indices.long())


def _require_index_range(name: str, index: torch.Tensor, size: int, note: str = "") -> None:
    """Raise unless every value of the non-empty ``index`` lies in ``[0, size)`` (reads the data)."""
    low, high = (int(v) for v in torch.aminmax(index))
    if low < 0 or high >= size:
        raise ValueError(f"{name} must lie in [0, {size - 1}]{note}, got values in [{low}, {high}]")


def as_entries(acts: tuple, num_latents: int | None, validate: bool) -> SparseEntries:
    """Check sparse activations, ``(values, indices)`` pairs or ``SparseEntries``, as ``SparseEntries``.

    Parameters
    ----------
    acts : SparseEntries or (values, indices)
        Entries, or ``(N, k)`` values and indices (converted to entries).
    num_latents : int or None
        ``M`` (required).
    validate : bool
        Also read the data: NaN/inf values, the index ranges and the row
        order. Repeated (row, latent) entries are left to the caller's sort
        by latent (``latent_order`` and ``require_no_repeated_entries``).

    Returns
    -------
    SparseEntries
    """
    if not isinstance(acts, SparseEntries):
        values, indices = _as_sparse(acts, num_latents, validate)
        n, k = values.shape
        rows = torch.arange(n, device=values.device).repeat_interleave(k)
        return SparseEntries(values.reshape(-1), rows, indices.reshape(-1), n)
    if num_latents is None:
        raise ValueError("sparse acts need num_latents: the number of latents M")
    num_latents = _checks.require_positive_int("num_latents", num_latents)
    batch_rows = _checks.require_positive_int("acts num_rows", acts.num_rows)
    values = _checks.require_tensor("acts values", acts.values)
    _checks.require_floating("acts values", values)
    for name in ("values", "rows", "columns"):
        tensor = _checks.require_tensor(f"acts {name}", getattr(acts, name))
        _checks.require_ndim(f"acts {name}", tensor, 1, "(nnz,)")
        if tensor.shape != values.shape or tensor.device != values.device:
            raise ValueError(
                f"acts {name} must have the shape and device of values ({tuple(values.shape)}, "
                f"{values.device}), got {tuple(tensor.shape)} on {tensor.device}"
            )
        if name != "values":
            _checks.require_integer(f"acts {name}", tensor)
    rows, columns = acts.rows.long(), acts.columns.long()
    if validate and values.numel():
        _checks.require_finite("acts values", values)
        _require_index_range("acts rows", rows, batch_rows)
        _require_index_range("acts columns", columns, num_latents)
        if bool((rows[1:] < rows[:-1]).any()):
            raise ValueError(
                "acts entries must come in row-major order (rows non-decreasing), got rows out of order"
            )
    return SparseEntries(values, rows, columns, batch_rows)


def latent_order(columns: torch.Tensor, num_latents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group row-major entries by latent: ``(sorted columns, order)`` of a stable sort of ``columns (nnz,)``.

    The stable sort keeps each latent's rows ascending, so an entry repeated
    within a row lands next to its twin (see ``require_no_repeated_entries``).
    """
    narrow = torch.int16 if num_latents <= torch.iinfo(torch.int16).max else torch.int32
    return torch.sort(columns.to(narrow), stable=True)


def require_no_repeated_entries(sorted_columns: torch.Tensor, sorted_rows: torch.Tensor) -> None:
    """Raise if a (row, latent) entry repeats, given entries in ``latent_order`` (reads the data)."""
    same = (sorted_columns[1:] == sorted_columns[:-1]) & (sorted_rows[1:] == sorted_rows[:-1])
    _require_no_repeats(int(same.sum()))


def require_distinct_per_row(indices: torch.Tensor) -> None:
    """Raise if a row of ``indices (N, k)`` lists a latent twice (reads the data)."""
    ordered = indices.sort(dim=1).values
    _require_no_repeats(int((ordered[:, 1:] == ordered[:, :-1]).sum()))


def _require_no_repeats(repeats: int) -> None:
    if repeats:
        raise ValueError(
            f"acts must list a latent at most once per row, got {repeats} repeated (row, latent) pair(s)"
        )


def num_latents_of(acts: torch.Tensor | SparseActivations, num_latents: int | None) -> int:
    """``M`` of checked activations: their width if dense, else ``num_latents``."""
    return acts.shape[1] if isinstance(acts, torch.Tensor) else num_latents


def values_of(acts: torch.Tensor | SparseActivations) -> torch.Tensor:
    """The value tensor of checked activations: ``(N, M)`` dense or ``(N, k)`` sparse."""
    return acts.values if isinstance(acts, SparseActivations) else acts


def num_rows(acts: torch.Tensor | SparseActivations) -> int:
    """``N`` of checked activations."""
    return values_of(acts).shape[0]


def check_embeddings(emb: object, n: int, emb_dim: int | None) -> torch.Tensor:
    """Check the shape and dtype of ``emb (N, D)``; its values are checked by ``inverse_norms``."""
    emb = _checks.require_tensor("emb", emb)
    _checks.require_ndim("emb", emb, 2, "(N, D)")
    _checks.require_floating("emb", emb)
    _checks.require_non_empty("emb", emb, "(N, D) with N >= 1 and D >= 1")
    if emb.shape[0] != n:
        raise ValueError(f"emb must have one row per sample of acts (N = {n}), got shape {tuple(emb.shape)}")
    if emb_dim is not None and emb.shape[1] != emb_dim:
        raise ValueError(f"emb must have {emb_dim} features (shape (N, {emb_dim})), got {tuple(emb.shape)}")
    return emb


def inverse_norms(emb: torch.Tensor, validate: bool) -> torch.Tensor:
    """``(N,)`` ``1 / |emb_n|``; with ``validate``, raise on NaN/inf or a zero row (one pass over ``emb``).

    A zero embedding has no direction (its self-similarity would be 0, not 1).
    """
    norms = torch.linalg.vector_norm(emb, dim=1)
    if validate and not bool((torch.isfinite(norms) & (norms > 0)).all()):
        _checks.require_finite("emb", emb)
        _checks.require_nonzero_rows("emb", emb, "the cosine similarity")
        raise ValueError(f"emb has rows whose norm overflows or underflows {emb.dtype}: rescale them")
    return 1.0 / norms.clamp_min(torch.finfo(emb.dtype).tiny)


def unit_embeddings(
    emb: object, n: int, emb_dim: int | None, validate: bool, dtype: torch.dtype
) -> torch.Tensor:
    """Check ``emb (N, D)`` (values too with ``validate``) and return ``ê = emb / |emb|`` in ``dtype``."""
    emb = check_embeddings(emb, n, emb_dim).to(dtype)
    return emb * inverse_norms(emb, validate)[:, None]


def checked_batch(
    acts: object, emb: object, num_latents: int | None, emb_dim: int | None, validate: bool
) -> tuple[torch.Tensor | SparseActivations, torch.Tensor]:
    """Check a batch for the MonoScore: activations, then embeddings in the compute dtype.

    Only shapes, dtypes, devices and sparse indices are checked here; the
    values of dense ``acts`` and of ``emb`` are checked by ``accumulate``, in
    the passes it makes anyway.

    Returns
    -------
    tuple
        The checked activations (dense ``(N, M)`` or sparse) and ``emb (N, D)``
        in float32 (float64 if the activations or ``emb`` are float64).
    """
    checked = as_activations(acts, num_latents, validate)
    values = values_of(checked)
    emb = check_embeddings(emb, num_rows(checked), emb_dim)
    require_same_device(values, emb, "emb")
    return checked, emb.to(compute_dtype(values, emb))


def require_same_device(acts: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
    """Raise unless ``acts`` and ``other`` (named ``other_name`` in the message) share a device."""
    if acts.device != other.device:
        raise ValueError(f"acts and {other_name} must be on one device, got {acts.device} and {other.device}")


def read_batch_values(acts: torch.Tensor | SparseActivations, emb: torch.Tensor) -> None:
    """Every check of a batch that reads the data, in one place (``accumulate`` makes them on the way).

    For callers that must reject a bad batch before they change anything.
    """
    if isinstance(acts, SparseActivations):
        require_distinct_per_row(acts.indices)
    else:
        _checks.require_finite("acts", acts)
    inverse_norms(emb, validate=True)


@dataclass
class MonoSums:
    """The mergeable state of the MonoScore of ``M`` latents with ``D``-dim embeddings.

    Attributes
    ----------
    act_emb : torch.Tensor
        ``(M, D)`` float64, ``S = sum_n l_n ê_n^T`` up to the last ``flush``.
    act_emb_recent : torch.Tensor
        ``(M, D)`` float32, the part of ``S`` added since: each float32
        batch's matmul accumulates into it in place (no ``(M, D)``
        temporary), and ``flush`` moves it into ``act_emb``.
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
            act_min=torch.full((num_latents,), torch.inf, **kw),
            act_max=torch.full((num_latents,), -torch.inf, **kw),
            float32_rows=torch.zeros((), **kw),
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

    def product_target(self, dtype: torch.dtype) -> torch.Tensor:
        """The ``(M, D)`` state a batch matmul in ``dtype`` accumulates into."""
        return self.act_emb if dtype == STATE_DTYPE else self.act_emb_recent

    def flush(self) -> None:
        """Move ``act_emb_recent`` into the float64 ``act_emb``."""
        self.act_emb.add_(self.act_emb_recent)
        self.act_emb_recent.zero_()


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
    ``acts`` (two more and a copy when a batch minimum is not 0); sparse input
    costs ``O(N k D)`` and ``O(N D)``.
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
        _checks.require_finite("acts", acts)
    emb_hat = emb * inverse_norms(emb, validate)[:, None]
    emb_sum = emb_hat.sum(dim=0).to(STATE_DTYPE)
    # The float32 matmul and sums only ever see values >= 0 (x - min): an offset
    # costs no digits, and their rounding stays relative to the shifted
    # activations (see scores_from_sums). The shift is added back in float64.
    offset = low.to(STATE_DTYPE)
    if bool((low != 0).any()):
        x = x - low
        _, _, col_sum, col_sq_sum = _column_stats(x)
        col_sq_sum += offset * (2 * col_sum + n * offset)
        col_sum += n * offset
        sums.act_emb.addr_(offset, emb_sum)
    sums.product_target(x.dtype).addmm_(x.T, emb_hat)
    sums.act_sum.add_(col_sum)
    sums.act_sq_sum.add_(col_sq_sum)
    sums.emb_sum.add_(emb_sum)
    sums.count.add_(n)
    torch.minimum(sums.act_min, offset, out=sums.act_min)
    torch.maximum(sums.act_max, high.to(STATE_DTYPE), out=sums.act_max)


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
    crow = torch.zeros(num_latents + 1, dtype=torch.long, device=latent.device)
    crow[1:] = listed.cumsum(0)
    inv_norm = inverse_norms(emb, validate)
    # l_n ê_n = (l_n / |e_n|) e_n: scale the N k values instead of the N D embeddings
    scaled = value.index_select(0, order) * inv_norm.index_select(0, sorted_row)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        by_latent = torch.sparse_csr_tensor(
            crow, sorted_row, scaled, (num_latents, n), check_invariants=False
        )
        sums.product_target(value.dtype).addmm_(by_latent, emb)
    value64 = value.to(STATE_DTYPE)
    sums.act_sum.add_(torch.bincount(latent, weights=value64, minlength=num_latents))
    sums.act_sq_sum.add_(torch.bincount(latent, weights=value64.square(), minlength=num_latents))
    sums.emb_sum.add_((inv_norm @ emb).to(STATE_DTYPE))
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


def _shifted_sq_norms(sums: MonoSums, low: torch.Tensor, rows: int = 128) -> torch.Tensor:
    """``(M,)`` ``|S_k - low_k E|^2`` in float64, a block of latents at a time (no ``(M, D)`` temporary)."""
    out = torch.empty_like(low)
    for start in range(0, low.shape[0], rows):
        block = sums.act_emb[start : start + rows] + sums.act_emb_recent[start : start + rows]
        block.addr_(low[start : start + rows], sums.emb_sum, alpha=-1)
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
    the raw float64 sums that the final shift by ``min`` cancels. With float32
    batches, a latent whose mass above the minimum lies all but a ~1e-5
    share in one sample therefore counts as dead; float64 streams resolve
    ~1e-14.
    """
    _checks.require_choice("dead", dead, DEAD_POLICIES)
    if float(sums.count) == 0:
        raise ValueError("no sample seen: MonoScore needs at least one batch of activations")
    n, low = sums.count, sums.act_min
    u = sums.act_sum - n * low
    v = sums.act_sq_sum - low * (2 * sums.act_sum - n * low)
    numerator = _shifted_sq_norms(sums, low) - v
    pair_weight = u * u - v
    raw_u = sums.act_sum.abs() + n * low.abs()
    raw_v = sums.act_sq_sum + low.abs() * (2 * sums.act_sum.abs() + n * low.abs())
    rounding = ROUNDING_SLACK[torch.float64] * (raw_v + 2 * u.abs() * raw_u)
    if float(sums.float32_rows) > 0:
        rounding = rounding + ROUNDING_SLACK[torch.float32] * (2 * u * u + v.abs())
    alive = (sums.act_max > low) & (pair_weight > rounding)
    score = numerator / torch.where(alive, pair_weight, torch.ones_like(pair_weight))
    fill = torch.nan if dead == "nan" else 0.0
    return torch.where(alive, score, torch.full_like(score, fill))
