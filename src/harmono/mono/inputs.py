"""The inputs of MonoScore and MonoLoss, checked: dense or sparse activations and their embeddings."""

from __future__ import annotations

from typing import NamedTuple

import torch

from harmono.core import checks
from harmono.core.dtypes import compute_dtype


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
    acts = checks.require_tensor("acts", acts)
    checks.require_ndim("acts", acts, 2, "(N, M)")
    checks.require_floating("acts", acts)
    checks.require_non_empty("acts", acts, "(N, M) with N >= 1 and M >= 1")
    if num_latents is not None and acts.shape[1] != num_latents:
        raise ValueError(
            f"acts must have {num_latents} latents (shape (N, {num_latents})), got {tuple(acts.shape)}"
        )
    return acts


def _as_sparse(acts: tuple, num_latents: int | None, validate: bool) -> SparseActivations:
    if len(acts) != 2:
        raise ValueError(f"sparse acts must be a pair (values, indices), got a tuple of {len(acts)} items")
    values = checks.require_tensor("acts values", acts[0])
    indices = checks.require_tensor("acts indices", acts[1])
    if num_latents is None:
        raise ValueError("sparse acts (values, indices) need num_latents: the number of latents M")
    num_latents = checks.require_positive_int("num_latents", num_latents)
    checks.require_ndim("acts values", values, 2, "(N, k)")
    checks.require_floating("acts values", values)
    checks.require_integer("acts indices", indices)
    if indices.shape != values.shape:
        raise ValueError(
            f"acts indices must have the shape of values {tuple(values.shape)}, got {tuple(indices.shape)}"
        )
    if indices.device != values.device:
        raise ValueError(
            f"acts values and indices must be on one device, got {values.device} and {indices.device}"
        )
    checks.require_non_empty("acts values", values, "(N, k) with N >= 1 and k >= 1")
    if values.shape[1] > num_latents:
        raise ValueError(
            f"acts lists k = {values.shape[1]} latents per row, more than num_latents = {num_latents}"
        )
    if validate:
        checks.require_finite("acts values", values)
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
    num_latents = checks.require_positive_int("num_latents", num_latents)
    batch_rows = checks.require_positive_int("acts num_rows", acts.num_rows)
    values = checks.require_tensor("acts values", acts.values)
    checks.require_floating("acts values", values)
    for name in ("values", "rows", "columns"):
        tensor = checks.require_tensor(f"acts {name}", getattr(acts, name))
        checks.require_ndim(f"acts {name}", tensor, 1, "(nnz,)")
        if tensor.shape != values.shape or tensor.device != values.device:
            raise ValueError(
                f"acts {name} must have the shape and device of values ({tuple(values.shape)}, "
                f"{values.device}), got {tuple(tensor.shape)} on {tensor.device}"
            )
        if name != "values":
            checks.require_integer(f"acts {name}", tensor)
    rows, columns = acts.rows.long(), acts.columns.long()
    if validate and values.numel():
        checks.require_finite("acts values", values)
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
    emb = checks.require_tensor("emb", emb)
    checks.require_ndim("emb", emb, 2, "(N, D)")
    checks.require_floating("emb", emb)
    checks.require_non_empty("emb", emb, "(N, D) with N >= 1 and D >= 1")
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
        checks.require_finite("emb", emb)
        checks.require_nonzero_rows("emb", emb, "the cosine similarity")
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
        checks.require_finite("acts", acts)
    inverse_norms(emb, validate=True)
