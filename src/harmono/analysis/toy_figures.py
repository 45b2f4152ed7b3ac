"""Figures of the harmonic-loss algorithmic-task experiments (paper §3, Figs. 2-3, 7, 14).

Each function takes plain arrays (numpy or torch), writes one PNG through
matplotlib's Agg backend (the ``plots`` extra), closes the figure and
returns the path. A model keeps its colour across the panels of a figure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harmono.analysis.plotting import pyplot
from harmono.analysis.toy_metrics import (
    ArrayLike,
    _as_float64,
    _require_finite,
    explained_variance_ratios,
    mean_std,
    pca_projection,
)

#: Rows above this count are drawn without their labels (genealogy has 130 tokens).
MAX_ANNOTATED_ROWS = 130


@contextmanager
def _panels(
    count: int, columns: int, panel_size: tuple[float, float], path: str | Path, title: str
) -> Iterator[list]:
    """Yield the axes of ``count`` panels on a grid of ``columns`` columns, then save the PNG.

    The spare cells of the grid are hidden; the figure is closed whether the
    drawing succeeds or raises.
    """
    if count < 1:
        raise ValueError(f"expected at least one panel, got {count}")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    plt = pyplot()
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(panel_size[0] * columns, panel_size[1] * rows), squeeze=False
    )
    try:
        flat = list(axes.ravel())
        for ax in flat[count:]:
            ax.set_visible(False)
        yield flat[:count]
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _colours(groups: Sequence[Mapping[str, object]]) -> dict[str, Any]:
    """One colour per name, in order of first appearance over ``groups``."""
    names = list(dict.fromkeys(name for group in groups for name in group))
    cmap = pyplot().get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _by_task(name: str, value: Mapping) -> Mapping[str, Mapping]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{name} must be a non-empty mapping task -> model -> data, got {value!r:.80}")
    for task, models in value.items():
        if not isinstance(models, Mapping):
            raise ValueError(
                f"{name}[{task!r}] must be a mapping model name -> data, got {type(models).__name__}"
            )
    return value


def plot_embedding_pca(
    panels: Sequence[tuple[str, ArrayLike, Sequence[str] | None]],
    path: str | Path,
    columns: int = 4,
    title: str = "",
) -> Path:
    """Save the 2-D PCA projection of the rows of each matrix, one panel per matrix.

    Each panel scatters the rows on their top two principal components,
    coloured by row index, each point annotated with its label when labels
    are given and ``V <= 130``; the panel title gets the top-2 explained
    variance appended, e.g. ``"modadd / harmonic MLP  EV2 100%"``.

    Parameters
    ----------
    panels : sequence of (title, matrix, labels)
        ``matrix`` is a (V, D) array or tensor (e.g. an embedding, rows =
        tokens), ``labels`` a sequence of V strings or None.
    path : str or Path
        Where the PNG goes (parent folders are created).
    columns : int
        Panels per row.
    title : str
        Figure title, none when empty.

    Returns
    -------
    Path
        ``path``.
    """
    panels = list(panels)
    with _panels(len(panels), columns, (3.6, 3.4), path, title) as axes:
        for ax, (name, matrix, labels) in zip(axes, panels, strict=True):
            coords = pca_projection(matrix, 2)  # (V, 2), checks the matrix
            ev2 = explained_variance_ratios(matrix)[:2].sum()
            rows = coords.shape[0]
            if labels is not None and len(labels) != rows:
                raise ValueError(f"panel {name!r}: expected {rows} labels (one per row), got {len(labels)}")
            ax.scatter(coords[:, 0], coords[:, 1], c=np.arange(rows), cmap="viridis", s=14, zorder=2)
            if labels is not None and rows <= MAX_ANNOTATED_ROWS:
                for (x, y), label in zip(coords, labels, strict=True):
                    ax.annotate(str(label), (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("PC 1", fontsize=8)
            ax.set_ylabel("PC 2", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_title(f"{name}  EV2 {100 * ev2:.0f}%", fontsize=9)
    return Path(path)


def _ev_panel(ax: Any, curves: Mapping[str, ArrayLike], colours: Mapping[str, Any], where: str) -> None:
    """Median cumulative EV over seeds with the IQR band, one line per model."""
    for name, ratios in curves.items():
        array = _as_float64(f"{where}[{name!r}]", ratios)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.size == 0:
            raise ValueError(
                f"{where}[{name!r}] must have shape (S, K) (ratios per seed), got shape {array.shape}"
            )
        _require_finite(f"{where}[{name!r}]", array)
        cumulative = np.cumsum(array, axis=1)  # (S, K)
        q25, median, q75 = np.percentile(cumulative, [25.0, 50.0, 75.0], axis=0)
        index = np.arange(1, array.shape[1] + 1)
        colour = colours[name]
        ax.plot(index, median, color=colour, marker="o", ms=3, lw=1.5, label=name)
        ax.fill_between(index, q25, q75, color=colour, alpha=0.2, lw=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("principal component", fontsize=8)
    ax.set_ylabel("cumulative explained variance", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_ev_curves(
    curves: Mapping[str, ArrayLike] | Mapping[str, Mapping[str, ArrayLike]],
    path: str | Path,
    title: str = "",
    columns: int = 5,
) -> Path:
    """Save the cumulative explained variance vs component index (paper Fig. 3a).

    For each model the median over seeds of the cumulative ratios is a line
    and the interquartile range a band.

    Parameters
    ----------
    curves : mapping name -> array (S, K), or mapping task -> (name -> array (S, K))
        Explained-variance ratios per seed (rows of
        :func:`~harmono.analysis.toy_metrics.explained_variance_ratios` of a
        batch); a (K,) array is one seed. With a mapping of tasks, one
        subplot per task, else a single panel.
    path : str or Path
        Where the PNG goes.
    title : str
        Panel title (single panel) or figure title (one panel per task).
    columns : int
        Subplots per row when there are several tasks.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves must be a non-empty mapping, got {curves!r:.80}")
    nested = [isinstance(v, Mapping) for v in curves.values()]
    if any(nested) and not all(nested):
        raise ValueError("curves must map every name to an array (S, K), or every task to a mapping")
    by_task = dict(curves) if all(nested) else {title: curves}
    colours = _colours(list(by_task.values()))
    with _panels(len(by_task), columns, (4.0, 3.4), path, title if all(nested) else "") as axes:
        for ax, (task, models) in zip(axes, by_task.items(), strict=True):
            _ev_panel(ax, models, colours, f"curves[{task!r}]" if all(nested) else "curves")
            ax.set_title(task, fontsize=10)
    return Path(path)


def plot_grokking(
    points_by_task: Mapping[str, Mapping[str, Sequence[tuple[int | None, int | None]]]],
    path: str | Path,
    title: str = "",
    columns: int = 5,
    threshold: float = 0.9,
) -> Path:
    """Save the grokking scatter: epoch test accuracy > 0.9 vs epoch train accuracy > 0.9.

    One subplot per task, one point per seed, log-log axes; the dashed line
    ``y = x`` means no grokking (test accuracy rises with train accuracy).
    Seeds with a ``None`` (never reached) are not drawn but counted in the
    legend, e.g. ``"harmonic MLP (18/20)"``.

    Parameters
    ----------
    points_by_task : mapping task -> (model name -> sequence of (train_epoch, test_epoch))
        Epochs from :func:`~harmono.analysis.toy_metrics.grokking_epoch`,
        1-based ints or None, one pair per seed.
    path : str or Path
        Where the PNG goes.
    title : str
        Figure title, none when empty.
    columns : int
        Subplots per row.
    threshold : float
        The accuracy threshold used, for the axis labels only.

    Returns
    -------
    Path
        ``path``.
    """
    by_task = _by_task("points_by_task", points_by_task)
    colours = _colours(list(by_task.values()))
    with _panels(len(by_task), columns, (3.8, 3.6), path, title) as axes:
        for ax, (task, models) in zip(axes, by_task.items(), strict=True):
            drawn: list[float] = []
            for name, pairs in models.items():
                pairs = [tuple(pair) for pair in pairs]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError(f"{task}/{name}: expected (train_epoch, test_epoch) pairs, got {pairs}")
                kept = [pair for pair in pairs if pair[0] is not None and pair[1] is not None]
                epochs = np.array(kept, dtype=np.float64).reshape(-1, 2)  # (seeds kept, 2)
                _require_finite(f"{task}/{name} epochs", epochs)
                if (epochs < 1).any():
                    raise ValueError(f"{task}/{name}: expected epochs >= 1 (log axes), got {epochs.min()}")
                label = f"{name} ({len(epochs)}/{len(pairs)})"
                ax.scatter(epochs[:, 0], epochs[:, 1], color=colours[name], s=18, alpha=0.8, label=label)
                drawn.extend(epochs.ravel().tolist())
            low, high = 1.0, 10.0  # whole decades around the points
            if drawn:
                low, high = (
                    10 ** np.floor(np.log10(min(drawn) / 1.2)),
                    10 ** np.ceil(np.log10(max(drawn) * 1.2)),
                )
            ax.plot([low, high], [low, high], color="grey", ls="--", lw=1, zorder=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            ax.set_xlabel(f"epoch train acc > {threshold:g}", fontsize=8)
            ax.set_ylabel(f"epoch test acc > {threshold:g}", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
            ax.set_title(task, fontsize=10)
            ax.legend(fontsize=7)
    return Path(path)


def plot_data_efficiency(
    curves_by_task: Mapping[str, Mapping[str, tuple[ArrayLike, ArrayLike]]],
    path: str | Path,
    title: str = "",
    columns: int = 5,
) -> Path:
    """Save the test accuracy vs train fraction (paper Fig. 3b): mean over seeds, ± std bars.

    Parameters
    ----------
    curves_by_task : mapping task -> (model name -> (fractions, accuracy))
        ``fractions`` has shape (F,), ``accuracy`` shape (S, F) (final test
        accuracy per seed and fraction; (F,) is one seed). The error bars
        are the sample std over seeds (none for one seed).
    path : str or Path
        Where the PNG goes.
    title : str
        Figure title, none when empty.
    columns : int
        Subplots per row.

    Returns
    -------
    Path
        ``path``.
    """
    by_task = _by_task("curves_by_task", curves_by_task)
    colours = _colours(list(by_task.values()))
    with _panels(len(by_task), columns, (3.8, 3.4), path, title) as axes:
        for ax, (task, models) in zip(axes, by_task.items(), strict=True):
            for name, (fractions, accuracy) in models.items():
                where = f"curves_by_task[{task!r}][{name!r}]"
                x = _as_float64(f"{where} fractions", fractions)
                acc = _as_float64(f"{where} accuracy", accuracy)
                if acc.ndim == 1:
                    acc = acc[None]
                if x.ndim != 1 or acc.ndim != 2 or acc.shape[1] != x.shape[0] or x.size == 0:
                    raise ValueError(
                        f"{where}: expected fractions (F,) and accuracy (S, F), got {x.shape} and {acc.shape}"
                    )
                _require_finite(f"{where} fractions", x)
                _require_finite(f"{where} accuracy", acc)
                stats = np.array([mean_std(column) for column in acc.T])  # (F, 2): mean, std over seeds
                ax.errorbar(
                    x,
                    stats[:, 0],
                    yerr=stats[:, 1],
                    color=colours[name],
                    marker="o",
                    ms=3,
                    lw=1.5,
                    capsize=2,
                    label=name,
                )
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("train fraction", fontsize=8)
            ax.set_ylabel("test accuracy", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_title(task, fontsize=10)
            ax.legend(fontsize=7)
    return Path(path)
