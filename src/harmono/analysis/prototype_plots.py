"""Figure of a linear layer's class weights drawn as 28x28 images (the harmonic-loss paper's Fig. 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from harmono.analysis.plotting import pyplot

IMAGE_SIDE = 28
BELOW_COLOUR = "#fde725"
"""Colour of the weights below the threshold (yellow, as in the paper)."""
ABOVE_COLOUR = "#31386f"
"""Colour of the weights at or above the threshold."""


def plot_prototypes(
    weights: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
    threshold: float = 0.01,
    title: str | None = None,
) -> Path:
    """Save each head's weight rows as images: raw, then thresholded.

    Per head two rows of one image per class: the raw weights on a diverging
    colormap centred at 0 (symmetric limits shared by the head's classes),
    and the weights split at ``threshold`` into two colours (below it yellow,
    as in the paper, where only this view shows the harmonic prototypes and
    their empty borders). The heads' rows follow each other, in the order of
    ``weights``, so they compare class by class.

    Parameters
    ----------
    weights : mapping of str to np.ndarray, each of shape (C, 784)
        Head name -> its weight rows (class centers for a harmonic head).
    class_names : sequence of str
        The ``C`` class names, titles of the columns.
    path : str or Path
        Where the PNG goes; parent folders are created.
    threshold : float
        Split value of the thresholded rows.
    title : str, optional
        Title of the figure.

    Returns
    -------
    Path
        ``path``.
    """
    num_classes = len(class_names)
    if not weights:
        raise ValueError("weights must hold at least one head, got an empty mapping")
    arrays = {}
    for head, array in weights.items():
        array = np.asarray(array, dtype=np.float64)
        if array.shape != (num_classes, IMAGE_SIDE * IMAGE_SIDE):
            raise ValueError(
                f"weights[{head!r}] must have shape (C, {IMAGE_SIDE * IMAGE_SIDE}) with C = {num_classes} "
                f"(one row per class name), got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"weights[{head!r}] contains NaN or inf; expected finite weights")
        arrays[head] = array.reshape(num_classes, IMAGE_SIDE, IMAGE_SIDE)

    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    two_colours = ListedColormap([BELOW_COLOUR, ABOVE_COLOUR])
    fig, axes = plt.subplots(
        2 * len(arrays),
        num_classes,
        figsize=(1.15 * num_classes + 1.6, 2.5 * len(arrays) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    for h, (head, images) in enumerate(arrays.items()):
        limit = float(np.abs(images).max()) or 1.0
        raw_row, split_row = axes[2 * h], axes[2 * h + 1]
        for k in range(num_classes):
            raw = raw_row[k].imshow(images[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
            split_row[k].imshow(images[k] >= threshold, cmap=two_colours, vmin=0, vmax=1)
            if h == 0:
                raw_row[k].set_title(class_names[k], fontsize=9)
        name = head.replace("_", "-")
        raw_row[0].set_ylabel(f"{name}\nweights", fontsize=9)
        split_row[0].set_ylabel(f"{name}\nw ≥ {threshold:g}", fontsize=9)
        fig.colorbar(raw, ax=list(raw_row), shrink=0.9, pad=0.01, aspect=12)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(
        handles=[
            Patch(color=BELOW_COLOUR, label=f"w < {threshold:g}"),
            Patch(color=ABOVE_COLOUR, label=f"w ≥ {threshold:g}"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=9,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
