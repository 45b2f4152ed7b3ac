"""Figure of the 2-D toy cases: decision regions, points and learned centers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from harmono.analysis.plotting import pyplot
from harmono.data.points import TOY_CASES
from harmono.harmonic import harmonic_logits


class PointsFit(Protocol):
    """What the figure reads of one fit (a ``harmono.experiments.harmonic.points.ToyResult``)."""

    case: str
    head: str
    final_loss: float
    weight_norm: float
    weights: tuple[tuple[float, float], ...]


def decision_regions(result: PointsFit, extent: float = 2.5, resolution: int = 301) -> torch.Tensor:
    """Predicted class on a square grid around the origin.

    The harmonic head predicts the nearest center whatever its exponent, the
    linear head the largest dot product.

    Parameters
    ----------
    result : PointsFit
        A fitted head (its weights).
    extent : float
        The grid spans ``[-extent, extent]`` on both axes.
    resolution : int
        Grid points per axis.

    Returns
    -------
    LongTensor, shape (resolution, resolution)
        Class index per grid point, rows along y (bottom to top).
    """
    axis = torch.linspace(-extent, extent, resolution)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1)  # (R, R, 2)
    weight = torch.tensor(result.weights)  # (C, 2)
    if result.head == "harmonic":
        logits = harmonic_logits(grid, weight)
    else:
        logits = grid @ weight.T
    return logits.argmax(-1)


def plot_toy_points(results: Sequence[PointsFit], path: str | Path, extent: float = 2.5) -> Path:
    """Save one panel per (case, head): regions, data points and learned weights.

    Data points are black dots; the learned weight rows (centers of the
    harmonic head) are crosses of the class colour, with a line to their
    point. Returns the path of the PNG.
    """
    plt = pyplot()
    cases = list(dict.fromkeys(r.case for r in results))
    heads = list(dict.fromkeys(r.head for r in results))
    fig, axes = plt.subplots(
        len(cases), len(heads), figsize=(4.2 * len(heads), 4.0 * len(cases)), squeeze=False
    )
    cmap = plt.get_cmap("tab10")
    for result in results:
        ax = axes[cases.index(result.case)][heads.index(result.head)]
        regions = decision_regions(result, extent)
        num_classes = len(result.weights)
        ax.imshow(
            regions.numpy(),
            origin="lower",
            extent=(-extent, extent, -extent, extent),
            cmap=cmap,
            vmin=0,
            vmax=9,
            alpha=0.25,
            interpolation="nearest",
        )
        points = TOY_CASES[result.case]
        for k in range(num_classes):
            (px, py), (wx, wy) = points[k], result.weights[k]
            ax.plot([px, wx], [py, wy], color=cmap(k), lw=1, alpha=0.7)
            ax.scatter([px], [py], color="black", s=30, zorder=3)
            ax.scatter([wx], [wy], color=cmap(k), marker="x", s=90, linewidths=2.5, zorder=4)
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_title(
            f"{result.case}, {result.head} head\nloss {result.final_loss:.2e}, |W| {result.weight_norm:.2f}",
            fontsize=10,
        )
    fig.suptitle("Learned centers (x) vs data points (•); background: decision regions", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
