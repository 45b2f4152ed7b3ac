import itertools
import math

import numpy as np
import pytest

from harmono.analysis.rank_tests import fisher_exact, mann_whitney


def pairwise_u(x, y):
    """U of x by its definition: the pairs (a, b) with a > b, ties counted one half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)


def enumerated_p(x, y):
    """The exact two-sided p: U of every split of the pooled values into |x| and |y|."""
    pooled = [*x, *y]
    observed = pairwise_u(x, y)
    us = []
    for chosen in itertools.combinations(range(len(pooled)), len(x)):
        rest = [pooled[k] for k in range(len(pooled)) if k not in chosen]
        us.append(pairwise_u([pooled[k] for k in chosen], rest))
    us = np.array(us)
    return min(1.0, 2 * min((us <= observed).mean(), (us >= observed).mean()))


@pytest.mark.parametrize(("m", "n", "shift"), [(5, 6, 0.0), (4, 7, 1.5), (6, 6, 3.0), (1, 5, 0.2)])
def test_exact_p_and_u_equal_the_enumeration_of_every_split(m, n, shift):
    rng = np.random.default_rng(m * 10 + n)
    x, y = rng.normal(shift, size=m).tolist(), rng.normal(size=n).tolist()
    result = mann_whitney(x, y)
    assert result.method == "exact"
    assert result.u == pairwise_u(x, y)
    assert result.p == pytest.approx(enumerated_p(x, y), rel=1e-12)


def test_ties_take_midranks_and_the_normal_approximation():
    x, y = [1, 2, 2, 3, 5, 5, 5, 9], [2, 4, 5, 6, 6, 7]
    result = mann_whitney(x, y)
    assert result.method == "normal" and result.u == pairwise_u(x, y)
    # the textbook normal approximation, with the tie and continuity corrections
    m, n = len(x), len(y)
    counts = np.unique(x + y, return_counts=True)[1]
    variance = m * n / 12 * (m + n + 1 - (counts**3 - counts).sum() / ((m + n) * (m + n - 1)))
    z = (abs(pairwise_u(x, y) - m * n / 2) - 0.5) / math.sqrt(variance)
    assert result.p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert mann_whitney([4, 4], [4, 4, 4]).p == 1.0  # all tied: no evidence either way


def test_the_normal_approximation_is_close_to_the_exact_p_for_20_seeds():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.5, 1.0):
        x, y = rng.normal(shift, size=20), rng.normal(size=19)
        assert mann_whitney(x, y, "normal").p == pytest.approx(mann_whitney(x, y, "exact").p, abs=0.01)


def test_mann_whitney_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed (an independent check only)")
    rng = np.random.default_rng(5)
    for m, n in [(5, 6), (19, 20), (40, 19)]:
        x, y = rng.normal(0.4, size=m), rng.normal(size=n)
        assert mann_whitney(x, y).p == pytest.approx(stats.mannwhitneyu(x, y, method="exact").pvalue)
        normal = stats.mannwhitneyu(x, y, method="asymptotic").pvalue
        assert mann_whitney(x, y, "normal").p == pytest.approx(normal)
    x, y = rng.integers(0, 6, 15), rng.integers(2, 8, 12)
    assert mann_whitney(x, y).p == pytest.approx(stats.mannwhitneyu(x, y, method="asymptotic").pvalue)


def test_mann_whitney_refuses_bad_samples_and_methods():
    with pytest.raises(ValueError, match="x must be a non-empty 1-d sequence"):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError, match="y must hold finite numbers, got \\[nan\\]"):
        mann_whitney([1.0], [2.0, float("nan")])
    with pytest.raises(ValueError, match="needs samples without ties"):
        mann_whitney([1, 2], [2, 3], "exact")
    with pytest.raises(ValueError, match="method must be"):
        mann_whitney([1], [2], "t-test")


def enumerated_fisher(table):
    """Fisher's two-sided p by counting which items of the pooled groups could be the successes."""
    (a, b), (c, d) = table
    first = a + b
    items = range(a + b + c + d)
    counts = {}
    for successes in itertools.combinations(items, a + c):
        in_first = sum(k < first for k in successes)
        counts[in_first] = counts.get(in_first, 0) + 1
    total = sum(counts.values())
    observed = counts[a] / total
    return sum(v / total for v in counts.values() if v / total <= observed * (1 + 1e-7))


@pytest.mark.parametrize("table", [[[3, 1], [1, 3]], [[0, 5], [4, 2]], [[5, 2], [5, 2]], [[6, 0], [0, 6]]])
def test_fisher_equals_the_enumeration_of_the_successes(table):
    assert fisher_exact(table) == pytest.approx(enumerated_fisher(table), rel=1e-12)


def test_fisher_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is not installed (an independent check only)")
    for table in ([[8, 12], [19, 1]], [[0, 20], [14, 6]], [[20, 0], [20, 0]]):
        assert fisher_exact(table) == pytest.approx(stats.fisher_exact(table).pvalue)


def test_fisher_refuses_what_is_not_a_table_of_counts():
    for bad in ([[1, 2, 3], [4, 5, 6]], [[1.5, 2], [3, 4]], [[-1, 2], [3, 4]]):
        with pytest.raises(ValueError, match="table must be 2 x 2 non-negative integer counts"):
            fisher_exact(bad)
