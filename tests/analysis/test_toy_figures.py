import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib", reason="the figures need the plots extra (matplotlib)")

from harmono.analysis.toy_figures import (  # noqa: E402
    plot_data_efficiency,
    plot_embedding_pca,
    plot_ev_curves,
    plot_grokking,
)
from harmono.analysis.toy_metrics import explained_variance_ratios  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def circle(n: int, dim: int = 16) -> np.ndarray:
    angle = 2 * np.pi * np.arange(n) / n
    rng = np.random.default_rng(n)
    plane = np.linalg.qr(rng.normal(size=(dim, 2)))[0]  # (dim, 2)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) @ plane.T  # (n, dim)


def test_plot_embedding_pca(tmp_path):
    rng = np.random.default_rng(0)
    panels = [
        ("modadd / harmonic MLP", circle(31), [str(i) for i in range(31)]),
        ("modadd / standard MLP", torch.from_numpy(rng.normal(size=(31, 16))).float(), None),
        ("genealogy", rng.normal(size=(140, 16)), [str(i) for i in range(140)]),  # too many to annotate
        ("one column", rng.normal(size=(8, 1)), list("abcdefgh")),
        ("two rows", rng.normal(size=(2, 16)), ["a", "b"]),
    ]
    path = plot_embedding_pca(panels, tmp_path / "sub" / "pca.png", columns=3, title="embeddings")
    assert path == tmp_path / "sub" / "pca.png"
    assert_png(path)


def test_plot_embedding_pca_checks_labels(tmp_path):
    with pytest.raises(ValueError, match="expected 31 labels"):
        plot_embedding_pca([("x", circle(31), ["a"])], tmp_path / "pca.png")
    with pytest.raises(ValueError, match="at least one panel"):
        plot_embedding_pca([], tmp_path / "pca.png")
    assert not (tmp_path / "pca.png").exists()


def test_plot_ev_curves_single_panel_and_per_task(tmp_path):
    rng = np.random.default_rng(1)
    harmonic = explained_variance_ratios(rng.normal(size=(4, 31, 16)) * np.linspace(3, 0.1, 16))  # (4, 16)
    standard = explained_variance_ratios(rng.normal(size=(4, 31, 16)))
    curves = {"harmonic MLP": harmonic, "standard MLP": standard}
    assert_png(plot_ev_curves(curves, tmp_path / "ev.png", title="modadd"))
    by_task = {
        "modadd": curves,
        "lattice": {"standard MLP": standard[0]},  # one model, one seed as a (K,) array
    }
    assert_png(plot_ev_curves(by_task, tmp_path / "ev_tasks.png", title="EV"))
    with pytest.raises(ValueError, match="every task to a mapping"):
        plot_ev_curves({"modadd": curves, "x": standard}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"shape \(S, K\)"):
        plot_ev_curves({"x": np.ones((2, 3, 4))}, tmp_path / "bad.png")


def test_plot_grokking_with_missing_seeds(tmp_path):
    points = {
        "modadd": {
            "standard MLP": [(68, 1032), (70, 900), (55, None), (60, 1500)],
            "harmonic MLP": [(307, 308), (290, 295), (None, None)],
        },
        "permutation": {"harmonic MLP": [(913, 1049)]},  # a task with a single model
        "never": {"standard TF": [(None, None), (400, None)]},  # nothing to draw
    }
    assert_png(plot_grokking(points, tmp_path / "grok.png", columns=2))
    with pytest.raises(ValueError, match="epochs >= 1"):
        plot_grokking({"t": {"m": [(0, 5)]}}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="mapping model name"):
        plot_grokking({"t": [(1, 2)]}, tmp_path / "bad.png")


def test_plot_grokking_legend_counts(tmp_path, monkeypatch):
    import matplotlib.axes

    labels = []
    original = matplotlib.axes.Axes.scatter

    def spy(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    plot_grokking({"t": {"harmonic MLP": [(1, 2)] * 18 + [(3, None), (None, None)]}}, tmp_path / "g.png")
    assert labels == ["harmonic MLP (18/20)"]


def test_plot_data_efficiency(tmp_path):
    rng = np.random.default_rng(2)
    fractions = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    curves = {
        "lattice": {
            "standard MLP": (fractions, np.clip(rng.uniform(size=(3, 8)) + fractions, 0, 1)),
            "harmonic MLP": (fractions, torch.ones(3, 8)),
        },
        "modadd": {"harmonic MLP": (fractions, np.clip(fractions * 1.5, 0, 1))},  # one model, one seed
    }
    assert_png(plot_data_efficiency(curves, tmp_path / "eff.png", title="data efficiency"))
    with pytest.raises(ValueError, match=r"fractions \(F,\) and accuracy \(S, F\), got \(8,\) and \(3, 7\)"):
        plot_data_efficiency({"t": {"m": (fractions, np.ones((3, 7)))}}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="non-finite"):
        plot_data_efficiency({"t": {"m": (fractions, np.full(8, np.nan))}}, tmp_path / "bad.png")
