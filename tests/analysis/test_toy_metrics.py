import math

import numpy as np
import pytest
import torch

from harmono.analysis.toy_metrics import (
    explained_variance_ratios,
    grokking_epoch,
    mean_std,
    median_iqr,
    median_range,
    pca_projection,
    top_k_explained_variance,
)


def eigen_reference(matrix: np.ndarray) -> np.ndarray:
    """Explained-variance ratios from the eigenvalues of the float64 covariance of the rows."""
    cov = np.cov(np.asarray(matrix, dtype=np.float64), rowvar=False, ddof=1)
    eig = np.sort(np.clip(np.linalg.eigvalsh(np.atleast_2d(cov)), 0.0, None))[::-1]
    k = min(matrix.shape)
    return eig[:k] / eig.sum()


# ---------------------------------------------------------------- explained variance


def test_points_on_a_line_have_one_component():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=16)
    matrix = rng.normal(size=(31, 1)) * direction + rng.normal(size=16)  # (31, 16), rank 1 after centring
    ratios = explained_variance_ratios(matrix)
    assert ratios.shape == (16,)
    assert ratios[0] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(ratios[1:]) < 1e-12)
    assert top_k_explained_variance(matrix) == pytest.approx(1.0, abs=1e-12)


def test_orthogonal_columns_of_chosen_variances():
    # orthonormal columns spanning centred vectors are centred themselves
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(40, 4))
    basis, _ = np.linalg.qr(raw - raw.mean(axis=0))  # (40, 4)
    np.testing.assert_allclose(basis.mean(axis=0), 0.0, atol=1e-15)
    variances = np.array([0.5, 5.0, 1.5, 3.0])
    matrix = basis * np.sqrt(variances * (40 - 1)) + 7.0  # column j has sample variance variances[j]
    np.testing.assert_allclose(matrix.var(axis=0, ddof=1), variances, rtol=1e-12)
    ratios = explained_variance_ratios(matrix)
    expected = np.sort(variances)[::-1] / variances.sum()
    np.testing.assert_allclose(ratios, expected, rtol=1e-12, atol=1e-15)
    assert top_k_explained_variance(matrix, k=2) == pytest.approx(8.0 / 10.0, rel=1e-12)
    assert top_k_explained_variance(matrix, k=4) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("shape", [(31, 16), (12, 16), (16, 16), (130, 16), (5, 3)])
def test_matches_covariance_eigendecomposition(shape):
    rng = np.random.default_rng(sum(shape))
    matrix = rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1])) + rng.normal(size=shape[1])
    ratios = explained_variance_ratios(matrix)
    assert ratios.shape == (min(shape),)
    assert ratios.dtype == np.float64
    np.testing.assert_allclose(ratios, eigen_reference(matrix), rtol=1e-9, atol=1e-12)
    assert ratios.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(ratios) <= 1e-15)


def test_tensor_input_of_any_dtype_and_grad():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(25, 16)).astype(np.float32)
    tensor = torch.from_numpy(matrix).requires_grad_(True)
    np.testing.assert_allclose(explained_variance_ratios(tensor), eigen_reference(matrix), rtol=1e-9)
    half = torch.from_numpy(matrix).to(torch.bfloat16)
    np.testing.assert_allclose(
        explained_variance_ratios(half), eigen_reference(half.to(torch.float64).numpy()), rtol=1e-9
    )


def test_batch_equals_per_matrix_calls():
    rng = np.random.default_rng(4)
    batch = rng.normal(size=(5, 31, 16)) * rng.uniform(0.1, 3.0, size=(5, 1, 16))
    ratios = explained_variance_ratios(torch.from_numpy(batch))
    assert ratios.shape == (5, 16)
    for s in range(5):
        np.testing.assert_allclose(ratios[s], explained_variance_ratios(batch[s]), rtol=1e-12, atol=1e-15)
    top2 = top_k_explained_variance(batch)
    assert isinstance(top2, np.ndarray) and top2.shape == (5,)
    np.testing.assert_allclose(top2, [top_k_explained_variance(m) for m in batch], rtol=1e-12)
    assert isinstance(top_k_explained_variance(batch[0]), float)


def test_invariant_to_a_constant_row_offset():
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(31, 16))
    shifted = matrix + rng.normal(size=16) * 100.0
    np.testing.assert_allclose(
        explained_variance_ratios(shifted), explained_variance_ratios(matrix), rtol=1e-9
    )


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (np.ones((5, 4)), "zero variance"),
        (np.stack([np.random.default_rng(0).normal(size=(5, 4)), np.ones((5, 4))]), r"zero variance.*\[1\]"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), r"non-finite value\(s\) \(1 NaN, 0 inf\)"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), r"\(0 NaN, 1 inf\)"),
        (np.ones((1, 4)), r"at least 2 rows.*got shape \(1, 4\)"),
        (np.ones((4, 0)), r"at least 2 rows and 1 column.*got shape \(4, 0\)"),
        (np.ones(4), r"shape \(V, D\) or \(S, V, D\), got shape \(4,\)"),
        (np.ones((2, 3, 4, 5)), r"shape \(V, D\) or \(S, V, D\), got shape \(2, 3, 4, 5\)"),
        (np.ones((3, 3), dtype=complex), "real-valued"),
    ],
)
def test_explained_variance_errors(matrix, match):
    with pytest.raises(ValueError, match=match):
        explained_variance_ratios(matrix)


def test_top_k_checks_k():
    matrix = np.random.default_rng(6).normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, min\(V, D\)\] = \[1, 3\], got 4"):
        top_k_explained_variance(matrix, k=4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            top_k_explained_variance(matrix, k=bad)


def test_pca_projection_reproduces_the_variances():
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(40, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 3.0
    coords = pca_projection(matrix, 2)
    assert coords.shape == (40, 2)
    np.testing.assert_allclose(coords.mean(axis=0), 0.0, atol=1e-12)
    total = matrix.var(axis=0, ddof=1).sum()
    np.testing.assert_allclose(
        coords.var(axis=0, ddof=1) / total, explained_variance_ratios(matrix)[:2], rtol=1e-10
    )
    # the sign of each component does not depend on the order of the rows
    np.testing.assert_allclose(pca_projection(matrix[::-1], 2), coords[::-1], rtol=1e-10, atol=1e-12)
    # fewer components than asked: the missing coordinates are zero
    column = matrix[:, :1]
    narrow = pca_projection(column, 2)
    assert np.all(narrow[:, 1] == 0)
    np.testing.assert_allclose(np.abs(narrow[:, 0]), np.abs(column[:, 0] - column.mean()), rtol=1e-12)


# ---------------------------------------------------------------- grokking


def step_curve(crossing: int, epochs: int = 200) -> np.ndarray:
    """Accuracy 0.1 before epoch ``crossing`` and 0.99 from it on (1-based)."""
    acc = np.full(epochs, 0.1)
    acc[crossing - 1 :] = 0.99
    return acc


def test_step_curve():
    assert grokking_epoch(step_curve(37)) == 37
    assert grokking_epoch(step_curve(1)) == 1
    assert isinstance(grokking_epoch(step_curve(37)), int)


def test_dip_after_19_epochs_gives_the_later_start():
    acc = step_curve(10)
    acc[10 - 1 + 19] = 0.5  # epochs 10..28 above, epoch 29 below, from 30 on above
    assert grokking_epoch(acc) == 30
    acc[10 - 1 + 19] = 0.95  # no dip: 20 epochs from epoch 10
    assert grokking_epoch(acc) == 10
    acc[10 - 1 + 20] = 0.5  # dip at epoch 30: epochs 10..29 are exactly 20
    assert grokking_epoch(acc) == 10


def test_never_above_and_exactly_at_threshold():
    assert grokking_epoch(np.full(100, 0.5)) is None
    assert grokking_epoch(np.full(100, 0.9)) is None  # strictly greater
    assert grokking_epoch(np.full(100, 0.9), threshold=0.89) == 1
    assert grokking_epoch([]) is None


def test_short_tail_run_does_not_count():
    acc = step_curve(182, epochs=200)  # 19 epochs above at the end
    assert grokking_epoch(acc) is None
    assert grokking_epoch(step_curve(181, epochs=200)) == 181  # exactly 20 at the end
    assert grokking_epoch(acc, window=19) == 182
    assert grokking_epoch(np.full(19, 1.0)) is None


def test_window_one_and_random_curves_against_a_loop():
    def loop(acc, threshold, window):
        run = 0
        for i, a in enumerate(acc):
            run = run + 1 if a > threshold else 0
            if run == window:
                return i - window + 2
        return None

    rng = np.random.default_rng(8)
    for trial in range(50):
        acc = (rng.uniform(size=120) > rng.uniform(0.05, 0.5)).astype(float) * 0.5 + 0.45
        window = int(rng.integers(1, 8))
        assert grokking_epoch(acc, 0.9, window) == loop(acc, 0.9, window), trial


def test_two_d_input():
    curves = np.stack([step_curve(37), np.full(200, 0.2), step_curve(5)])
    assert grokking_epoch(curves) == [37, None, 5]
    assert grokking_epoch(torch.from_numpy(curves).float()) == [37, None, 5]
    assert grokking_epoch(curves[:, :3]) == [None, None, None]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"accuracy": np.ones((2, 3, 4))}, r"shape \(E,\) or \(S, E\), got shape \(2, 3, 4\)"),
        ({"accuracy": np.array([0.5, np.nan])}, r"non-finite value\(s\) \(1 NaN"),
        ({"accuracy": np.ones(30), "window": 0}, "window must be a positive int, got 0"),
        ({"accuracy": np.ones(30), "window": 2.5}, "window must be a positive int"),
        ({"accuracy": np.ones(30), "threshold": float("nan")}, "threshold must be a finite number"),
    ],
)
def test_grokking_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        grokking_epoch(**kwargs)


# ---------------------------------------------------------------- summaries


def test_median_range_and_iqr_match_numpy():
    values = np.random.default_rng(9).normal(size=20)
    assert median_range(values) == pytest.approx((np.median(values), values.min(), values.max()))
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    assert median_iqr(values) == pytest.approx((q50, q25, q75))
    assert median_iqr(torch.from_numpy(values)) == pytest.approx((q50, q25, q75))


def test_summaries_skip_none_and_nan():
    values = [307, None, 12, float("nan"), 4172, 98, None]
    kept = np.array([307, 12, 4172, 98], dtype=float)
    assert median_range(values) == (np.median(kept), 12.0, 4172.0)
    q25, q50, q75 = np.percentile(kept, [25, 50, 75])
    assert median_iqr(values) == pytest.approx((q50, q25, q75))
    assert median_range([None, None]) is None
    assert median_iqr([float("nan")]) is None
    assert median_range([]) is None
    assert median_range([5]) == (5.0, 5.0, 5.0)
    assert all(type(v) is float for v in median_range(values))


def test_mean_std():
    values = np.random.default_rng(10).uniform(size=7)
    mean, std = mean_std(values)
    assert mean == pytest.approx(values.mean())
    assert std == pytest.approx(values.std(ddof=1))
    assert mean_std([0.25]) == (0.25, 0.0)
    assert mean_std(torch.tensor([1.0, 3.0])) == pytest.approx((2.0, math.sqrt(2.0)))
    with pytest.raises(ValueError, match="at least one number"):
        mean_std([])
    with pytest.raises(ValueError, match="None entry"):
        mean_std([1.0, None])
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([1.0, float("nan")])


def test_summaries_reject_nested_values():
    with pytest.raises(ValueError, match=r"1-D sequence of numbers or None, got shape \(2, 2\)"):
        median_range(np.ones((2, 2)))


def test_class_separation_of_a_simplex_and_a_line():
    from harmono.analysis.toy_metrics import class_separation

    rng = np.random.default_rng(0)
    corners = np.eye(5) * 3.0  # five classes at the corners of a regular simplex in 5-d
    classes = np.repeat(np.arange(5), 8)
    rows = corners[classes] + 0.01 * rng.standard_normal((40, 5))
    ratio, spectrum = class_separation(rows, classes)
    # naive float64 reference: mean same-class distance over mean other-class distance
    same = [
        np.linalg.norm(rows[i] - rows[j])
        for i in range(40)
        for j in range(40)
        if i != j and classes[i] == classes[j]
    ]
    other = [
        np.linalg.norm(rows[i] - rows[j]) for i in range(40) for j in range(40) if classes[i] != classes[j]
    ]
    assert ratio == pytest.approx(np.mean(same) / np.mean(other), rel=1e-12)
    assert ratio < 0.01 and np.allclose(spectrum[:4], 0.25, atol=0.01)  # 4 equal directions: top-2 EV 50%
    line = np.outer(classes, [1.0, 2.0, 0.0]) + 0.01 * rng.standard_normal((40, 3))
    assert class_separation(line, classes)[1][0] > 0.999
    with pytest.raises(ValueError, match=r"classes must have shape \(N=40,\), got \(39,\)"):
        class_separation(rows, classes[:39])
    with pytest.raises(ValueError, match="at least two classes"):
        class_separation(rows[:3], np.arange(3))
