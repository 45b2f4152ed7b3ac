"""Metrics of the harmonic-loss algorithmic-task experiments (paper §3.1).

- EV: PCA explained-variance ratios over the rows of an embedding matrix,
  the paper's metric being the sum of the top two (``top_k_explained_variance``).
- Grokking: the first epoch from which the accuracy stays above a threshold
  for ``window`` consecutive epochs (``grokking_epoch``).
- Summaries over seeds: ``median_range``, ``median_iqr``, ``mean_std``.

Everything is computed in float64 numpy on the CPU; inputs may be numpy
arrays, torch tensors (any device and dtype) or nested sequences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from harmono.core.checks import require_positive_int

ArrayLike = torch.Tensor | np.ndarray | Sequence


def _as_float64(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 numpy array (a copy for tensors), or a ``ValueError``."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"{name} must be real-valued, got dtype {value.dtype}")
        return value.detach().to("cpu", torch.float64).numpy()
    if np.iscomplexobj(value):
        raise ValueError(f"{name} must be real-valued, got a complex array")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__}") from err


def _require_finite(name: str, array: np.ndarray) -> None:
    bad = array.size - int(np.isfinite(array).sum())
    if bad:
        n_nan = int(np.isnan(array).sum())
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) ({n_nan} NaN, {bad - n_nan} inf) "
            f"out of {array.size}; expected finite values"
        )


def _centred_rows(matrix: ArrayLike) -> np.ndarray:
    """Check a ``(V, D)`` or ``(S, V, D)`` matrix and return it with its columns centred (float64)."""
    array = _as_float64("matrix", matrix)
    if array.ndim not in (2, 3):
        raise ValueError(f"matrix must have shape (V, D) or (S, V, D), got shape {array.shape}")
    *_, rows, cols = array.shape
    if rows < 2 or cols < 1 or array.size == 0:
        raise ValueError(
            f"matrix must have at least 2 rows and 1 column, expected shape (V >= 2, D >= 1) "
            f"per matrix, got shape {array.shape}"
        )
    _require_finite("matrix", array)
    spread = np.ptp(array, axis=-2).max(axis=-1)  # () or (S,): 0 where every row is the same
    flat = np.flatnonzero(np.atleast_1d(spread) == 0)
    if flat.size:
        where = "" if array.ndim == 2 else f" (matrices {flat.tolist()} of the batch)"
        raise ValueError(
            f"matrix has zero variance{where}: all of its rows are equal; "
            "expected rows that differ, PCA ratios are undefined otherwise"
        )
    return array - array.mean(axis=-2, keepdims=True)


def explained_variance_ratios(matrix: ArrayLike) -> np.ndarray:
    """PCA explained-variance ratios over the rows of ``matrix``.

    The rows are the samples (e.g. the ``V`` token embeddings), the columns
    the features. The columns are centred and the ratios are the squared
    singular values of the centred matrix over their sum, in float64: the
    values of ``sklearn.decomposition.PCA().explained_variance_ratio_``.

    Parameters
    ----------
    matrix : Tensor or ndarray, shape (V, D) or (S, V, D)
        One matrix, or a batch of ``S`` matrices (e.g. one per seed). Needs
        ``V >= 2`` rows, finite values and rows that are not all equal.

    Returns
    -------
    ndarray, shape (min(V, D),) or (S, min(V, D))
        Ratios in descending order, summing to 1 (per matrix).

    Raises
    ------
    ValueError
        On a wrong number of dimensions, fewer than two rows, a NaN or
        infinity, or a matrix whose rows are all equal (zero variance).
    """
    centred = _centred_rows(matrix)
    singular = np.linalg.svd(centred, compute_uv=False)  # (..., min(V, D)), descending
    power = singular**2
    return power / power.sum(axis=-1, keepdims=True)


def top_k_explained_variance(matrix: ArrayLike, k: int = 2) -> float | np.ndarray:
    """Sum of the ``k`` largest explained-variance ratios (the paper's EV is ``k=2``).

    Parameters
    ----------
    matrix : Tensor or ndarray, shape (V, D) or (S, V, D)
        As for :func:`explained_variance_ratios`.
    k : int
        Number of principal components, ``1 <= k <= min(V, D)``.

    Returns
    -------
    float or ndarray, shape (S,)
        A float for one matrix, one value per matrix for a batch; in [0, 1].
    """
    k = require_positive_int("k", k)
    ratios = explained_variance_ratios(matrix)
    available = ratios.shape[-1]
    if k > available:
        raise ValueError(f"k must be an int in [1, min(V, D)] = [1, {available}], got {k!r}")
    total = ratios[..., :k].sum(axis=-1)
    return float(total) if ratios.ndim == 1 else total


def pca_projection(matrix: ArrayLike, n_components: int = 2) -> np.ndarray:
    """Coordinates of the rows of ``matrix`` on its top principal components.

    The sign of each component is fixed as in scikit-learn (the largest
    absolute loading is positive), so the picture is deterministic.

    Parameters
    ----------
    matrix : Tensor or ndarray, shape (V, D)
        The rows to project, checked as for :func:`explained_variance_ratios`.
    n_components : int
        Number of components; when ``min(V, D)`` is smaller, the missing
        coordinates are zero.

    Returns
    -------
    ndarray, shape (V, n_components)
        Float64 coordinates of the centred rows.
    """
    n_components = require_positive_int("n_components", n_components)
    centred = _centred_rows(matrix)
    if centred.ndim != 2:
        raise ValueError(f"matrix must have shape (V, D), got shape {centred.shape}")
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(V, D), D)
    vt = vt[:n_components]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    coords = centred @ (vt * signs[:, None]).T  # (V, k)
    out = np.zeros((centred.shape[0], n_components))
    out[:, : coords.shape[1]] = coords
    return out


def grokking_epoch(
    accuracy: ArrayLike, threshold: float = 0.9, window: int = 20
) -> int | None | list[int | None]:
    """First epoch from which the accuracy stays above ``threshold`` for ``window`` epochs.

    ``accuracy[i]`` is the accuracy after epoch ``i + 1``. The result is the
    1-based epoch at which the first run of at least ``window`` consecutive
    epochs with ``accuracy > threshold`` (strictly) starts. A run still
    shorter than ``window`` at the end of the curve does not count. Applied
    to the train and the test curve of a run, it gives the two epochs of the
    grokking plot (paper §3.1). The repository's ``find_consecutive_elements``
    returns the 0-based index instead, one less.

    Parameters
    ----------
    accuracy : Tensor, ndarray or sequence, shape (E,) or (S, E)
        One accuracy curve, or one curve per seed. Finite values.
    threshold : float
        An epoch counts when its accuracy is strictly greater.
    window : int
        Minimum run length, ``>= 1``.

    Returns
    -------
    int or None, or list of (int or None) of length S
        The 1-based start epoch, ``None`` when no run is long enough.
    """
    curves = _as_float64("accuracy", accuracy)
    if curves.ndim not in (1, 2):
        raise ValueError(f"accuracy must have shape (E,) or (S, E), got shape {curves.shape}")
    _require_finite("accuracy", curves)
    window = require_positive_int("window", window)
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    rows = np.atleast_2d(curves)
    above = rows > threshold  # (S, E)
    counts = np.concatenate([np.zeros((len(rows), 1), dtype=np.int64), above.cumsum(axis=1)], axis=1)
    full = (counts[:, window:] - counts[:, :-window]) == window  # (S, E - window + 1): window all above
    epochs: list[int | None] = []
    for row in full:
        starts = np.flatnonzero(row)
        epochs.append(int(starts[0]) + 1 if starts.size else None)
    return epochs[0] if curves.ndim == 1 else epochs


def _kept_values(name: str, values: Iterable[float | None] | ArrayLike) -> np.ndarray:
    """The 1-D float64 values of ``values`` with ``None`` entries dropped (NaN kept)."""
    if isinstance(values, torch.Tensor | np.ndarray):
        array = _as_float64(name, values)
    else:
        array = _as_float64(name, [v for v in values if v is not None])
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers or None, got shape {array.shape}")
    return array


def median_range(values: Iterable[float | None] | ArrayLike) -> tuple[float, float, float] | None:
    """Median, minimum and maximum, ignoring ``None`` and NaN entries.

    Parameters
    ----------
    values : sequence of (float or None), or Tensor / ndarray, shape (N,)
        E.g. one grokking epoch or EV per seed.

    Returns
    -------
    (median, min, max) or None
        ``None`` when no value is left.
    """
    array = _kept_values("values", values)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return None
    return float(np.median(array)), float(array.min()), float(array.max())


def median_iqr(values: Iterable[float | None] | ArrayLike) -> tuple[float, float, float] | None:
    """Median and the 25th and 75th percentiles, ignoring ``None`` and NaN entries.

    Percentiles use numpy's default linear interpolation.

    Parameters
    ----------
    values : sequence of (float or None), or Tensor / ndarray, shape (N,)
        E.g. one value per seed.

    Returns
    -------
    (median, q25, q75) or None
        ``None`` when no value is left.
    """
    array = _kept_values("values", values)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return None
    q25, median, q75 = np.percentile(array, [25.0, 50.0, 75.0])
    return float(median), float(q25), float(q75)


def mean_std(values: Iterable[float] | ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for a single value).

    Unlike the median summaries this does not skip anything: a ``None``,
    NaN or infinity is an error.

    Parameters
    ----------
    values : sequence of float, or Tensor / ndarray, shape (N,)
        At least one finite value, e.g. one accuracy per seed.

    Returns
    -------
    (mean, std)
    """
    if not isinstance(values, torch.Tensor | np.ndarray):
        values = list(values)
        if any(v is None for v in values):
            raise ValueError("values must be numbers, got a None entry (median_range skips None)")
    array = _kept_values("values", values)
    if array.size == 0:
        raise ValueError("values must hold at least one number, got an empty sequence")
    _require_finite("values", array)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std


def class_separation(rows: ArrayLike, classes: ArrayLike) -> tuple[float, np.ndarray]:
    """How tightly embedding rows cluster by class, and how the class means spread.

    Parameters
    ----------
    rows : array, shape (N, D)
        Embedding rows, e.g. the number tokens of the equivalence task.
    classes : array of int, shape (N,)
        The class of each row (at least two classes, one with two rows).

    Returns
    -------
    (ratio, spectrum)
        ``ratio``: mean Euclidean distance between rows of the same class
        over the mean distance between rows of different classes (0 for
        points collapsed onto their class). ``spectrum``: the explained
        variance ratios of the centred class means, largest first (``C``
        equal classes at the corners of a regular simplex give ``C - 1``
        equal values; classes on a line give ``[1, 0, ...]``).
    """
    x = _as_float64("rows", rows)
    if x.ndim != 2:
        raise ValueError(f"rows must have shape (N, D), got {x.shape}")
    labels = np.asarray(classes)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"classes must have shape (N={x.shape[0]},), got {labels.shape}")
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None]
    if not same.any() or not other.any():
        raise ValueError("classes must hold at least two classes and one class with two rows")
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    means = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    return float(distances[same].mean() / distances[other].mean()), explained_variance_ratios(means)
