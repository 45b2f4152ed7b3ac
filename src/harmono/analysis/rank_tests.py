"""Two-sample tests for comparing a measured distribution with a published one.

- :func:`mann_whitney`: the Mann-Whitney U (Wilcoxon rank-sum) test of two
  samples, e.g. the grokking epochs of harmono's seeds against the paper's.
  Two-sided; the exact null distribution when neither sample has ties and
  both are small enough, else the normal approximation with the tie and
  continuity corrections (the textbook forms, as in ``scipy.stats``).
- :func:`fisher_exact`: Fisher's exact test of a 2 x 2 table, e.g. how many
  seeds generalised out of how many, here against the paper. Two-sided:
  the probability of every table with the same margins that is no more
  likely than the one observed.

Both work in float64 on the CPU and return the statistic with its p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

EXACT_LIMIT = 100
"""The largest sample for which :func:`mann_whitney` uses the exact distribution (without ties)."""


class RankTest(NamedTuple):
    """The result of :func:`mann_whitney`."""

    u: float
    """U of the first sample: the pairs ``(a, b)`` with ``a > b``, ties counted ½."""
    p: float
    """Two-sided p-value."""
    method: str
    """``"exact"`` or ``"normal"`` (the normal approximation)."""


def _sample(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite numbers, got {array[~np.isfinite(array)][:3].tolist()}")
    return array


def _u_counts(m: int, n: int) -> np.ndarray:
    """How many orderings of ``m`` + ``n`` distinct values give each U = 0..m n: ``(m n + 1,)``.

    The coefficients of the Gaussian binomial ``[m + n choose m]_q``, built
    by the recursion ``c(m, n) = c(m - 1, n) shifted by n + c(m, n - 1)``.
    """
    counts = [np.ones(1) for _ in range(n + 1)]  # counts[j]: the coefficients for (0, j)
    for i in range(1, m + 1):
        row = [np.ones(1)]
        for j in range(1, n + 1):
            total = np.zeros(i * j + 1)
            total[j:] += counts[j]  # the largest value is in the first sample: it beats all j others
            total[: len(row[j - 1])] += row[j - 1]  # or in the second
            row.append(total)
        counts = row
    return counts[n]


def mann_whitney(x: Sequence[float], y: Sequence[float], method: str = "auto") -> RankTest:
    """The two-sided Mann-Whitney U test of ``x (m,)`` against ``y (n,)``.

    Parameters
    ----------
    x, y : sequence of float
        The two samples (non-empty, finite).
    method : str
        ``"exact"``, ``"normal"``, or ``"auto"``: exact when there are no ties
        and both samples have at most ``EXACT_LIMIT`` values, else normal.

    Returns
    -------
    RankTest
        U of ``x``, the p-value and the method used.
    """
    a, b = _sample("x", x), _sample("y", y)
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"method must be 'auto', 'exact' or 'normal', got {method!r}")
    m, n = len(a), len(b)
    pooled = np.concatenate([a, b])
    _, ties = np.unique(pooled, return_counts=True)
    tied = bool((ties > 1).any())
    if method == "exact" and tied:
        raise ValueError("the exact test needs samples without ties; use method='normal'")
    if method == "auto":
        method = "exact" if not tied and max(m, n) <= EXACT_LIMIT else "normal"
    ordered = np.sort(pooled)
    below = np.searchsorted(ordered, pooled, "left")
    ranks = below + (np.searchsorted(ordered, pooled, "right") - below + 1) / 2  # midranks for ties
    u = float(ranks[:m].sum() - m * (m + 1) / 2)
    if method == "exact":
        counts = _u_counts(m, n)
        total = counts.sum()
        low = min(u, m * n - u)  # the distribution is symmetric about m n / 2
        p = min(1.0, 2 * counts[: int(round(low)) + 1].sum() / total)
        return RankTest(u, float(p), "exact")
    big = m + n
    variance = m * n / 12 * ((big + 1) - float((ties**3 - ties).sum()) / (big * (big - 1)))
    if variance <= 0:
        return RankTest(u, 1.0, "normal")
    z = max(abs(u - m * n / 2) - 0.5, 0.0) / math.sqrt(variance)
    return RankTest(u, math.erfc(z / math.sqrt(2)), "normal")


def fisher_exact(table: Sequence[Sequence[int]]) -> float:
    """The two-sided p-value of Fisher's exact test of a 2 x 2 table of counts ``[[a, b], [c, d]]``.

    Rows are the two groups, columns the two outcomes; the tables with the
    same margins that are no more likely than this one (to a relative 1e-7)
    add up to the p-value.
    """
    cells = np.asarray(table)
    if cells.shape != (2, 2) or not np.issubdtype(cells.dtype, np.integer) or (cells < 0).any():
        raise ValueError(f"table must be 2 x 2 non-negative integer counts, got {cells.tolist()}")
    (a, b), (c, _) = cells.tolist()
    row, column, total = a + b, a + c, int(cells.sum())

    def probability(k: int) -> float:
        return math.comb(column, k) * math.comb(total - column, row - k) / math.comb(total, row)

    observed = probability(a)
    support = range(max(0, row + column - total), min(row, column) + 1)
    return min(1.0, sum(p for p in map(probability, support) if p <= observed * (1 + 1e-7)))
