"""Figures of SAE latents: MonoScore distributions and the images that activate chosen latents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harmono.analysis.plotting import pyplot


def plot_score_histograms(
    scores: Mapping[str, np.ndarray], out: str | Path | BinaryIO, title: str | None = None
) -> str | Path | BinaryIO:
    """Overlaid histograms of per-latent MonoScores, one per model; dead latents (NaN) left out.

    Parameters
    ----------
    scores : mapping of str to np.ndarray, each of shape (M,)
        Model name -> its latents' scores (NaN for dead latents).
    out : str, Path or binary file
        Where the PNG goes.
    title : str, optional
        Title of the figure.

    Returns
    -------
    ``out``.
    """
    if not scores:
        raise ValueError("scores must hold at least one model, got an empty mapping")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
    alive = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    alive = {name: values[np.isfinite(values)] for name, values in alive.items()}
    everything = np.concatenate([v for v in alive.values() if v.size] or [np.zeros(1)])
    bins = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), 41)
    for name, values in alive.items():
        label = (
            f"{name} (mean {values.mean():.3f}, {values.size} alive)"
            if values.size
            else f"{name} (none alive)"
        )
        ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.45, label=label)
    ax.set_xlabel("MonoScore of a latent")
    ax.set_ylabel("latents")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_training_terms(
    logs: Mapping[str, Sequence[Mapping]], terms: Sequence[str], out: str | Path | BinaryIO
) -> str | Path | BinaryIO:
    """One panel per logged term against the step, one line per run; log scale where all values are > 0.

    Parameters
    ----------
    logs : mapping of str to sequence of mapping
        Run name -> its metric records, each with ``"step"`` and some of ``terms``.
    terms : sequence of str
        The record keys to plot, one panel each.
    out : str, Path or binary file
        Where the PNG goes.

    Returns
    -------
    ``out``.
    """
    if not terms:
        raise ValueError("terms must name at least one logged value, got none")
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(terms), figsize=(3.2 * len(terms), 2.8), layout="constrained", squeeze=False
    )
    for ax, term in zip(axes[0], terms, strict=True):
        for name, records in logs.items():
            points = [(r["step"], r[term]) for r in records if r.get(term) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=name, linewidth=1)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        values = [r[term] for records in logs.values() for r in records if r.get(term) is not None]
        if term != "l0" and values and min(values) > 0:
            ax.set_yscale("log")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_latent_gallery(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    out: str | Path | BinaryIO,
    title: str | None = None,
    per_row: int | None = None,
) -> str | Path | BinaryIO:
    """One row per latent: its label on the left, then the images that activate it most.

    Parameters
    ----------
    rows : sequence of (str, sequence of np.ndarray)
        Per latent its label and its top images, uint8 ``(H, W)`` or ``(H, W, 3)``, strongest first.
    out : str, Path or binary file
        Where the PNG goes.
    title : str, optional
        Title of the figure.
    per_row : int, optional
        Image columns (default: the longest row).

    Returns
    -------
    ``out``.
    """
    if not rows:
        raise ValueError("rows must hold at least one latent, got none")
    columns = per_row or max(len(images) for _, images in rows) or 1
    plt = pyplot()
    fig, axes = plt.subplots(
        len(rows), columns + 1, figsize=(0.75 * (columns + 3), 0.8 * len(rows) + 0.4), squeeze=False,
        gridspec_kw={"width_ratios": [3.2] + [1] * columns},
    )  # fmt: skip
    for (label, images), line in zip(rows, axes, strict=True):
        line[0].text(1.0, 0.5, label, ha="right", va="center", fontsize=8, transform=line[0].transAxes)
        for ax, image in zip(line[1:], list(images)[:columns], strict=False):
            ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None, vmin=0, vmax=255)
        for ax in line:
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=0.93 if title else 0.99, wspace=0.05, hspace=0.1
    )
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
