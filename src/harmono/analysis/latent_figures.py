"""Figures of evaluated SAEs: MonoScore histograms, galleries of the most and least monosemantic latents."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from harmono.analysis.latent_plots import plot_latent_gallery, plot_score_histograms
from harmono.analysis.latent_table import LatentTable, read_latent_table

HISTOGRAM_FILE = "monoscore_hist.png"


def gallery_file(name: str) -> str:
    """File name of the gallery of the SAE called ``name``: ``latents-<slug>.png``."""
    return "latents-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "sae") + ".png"


def gallery_latents(table: LatentTable, count: int = 4) -> tuple[list[int], list[int]]:
    """The ``count`` most and ``count`` least monosemantic latents that fill every thumbnail slot.

    Only latents with a score and with as many top-activating samples as
    slots are eligible, so a rare latent with one lucky sample cannot win.
    Returns ``(most, least)``, each strongest first resp. weakest first.
    """
    if table.top_rows is None:
        return [], []
    scores = table.scores()
    full = (table.top_rows >= 0).all(axis=1)
    eligible = np.flatnonzero(np.isfinite(scores) & full)
    order = eligible[np.argsort(-scores[eligible], kind="stable")]
    most = order[:count].tolist()
    least = [i for i in order[::-1][:count].tolist() if i not in most]
    return most, least


def _label(table: LatentTable, latent: int) -> str:
    row = table.latents[latent]
    label = f"latent {latent}  MS {row['mono_score']:.2f}"
    if row.get("dominant_class") is not None:
        label += f"\n{row['dominant_class']}, purity {row['purity_binary']:.2f}"
    return label


def plot_gallery(
    table: LatentTable, out: str | Path | BinaryIO, count: int = 4
) -> str | Path | BinaryIO | None:
    """Gallery of ``table``'s most and least monosemantic latents (None without images)."""
    most, least = gallery_latents(table, count)
    if table.images is None or not most:
        return None
    rows = [(_label(table, i), [table.images(int(r)) for r in table.top_rows[i]]) for i in most + least]
    title = f"{table.name}: the {len(most)} most (top) and {len(least)} least monosemantic latents"
    return plot_latent_gallery(rows, out, title=title)


def write_sae_figures(directory: str | Path, runs: Sequence[tuple[str, Path]]) -> list[Path]:
    """The MonoScore histogram of all ``runs`` and a gallery per run, into ``directory``.

    Parameters
    ----------
    directory : str or Path
        Where the PNGs go.
    runs : sequence of (str, Path)
        Name and run directory (evaluated by ``harmono sae eval``) of each SAE.

    Returns
    -------
    list of Path
        The files written.
    """
    directory = Path(directory)
    tables = [read_latent_table(run, name) for name, run in runs]
    scores = {t.name: t.scores() for t in tables}
    title = "MonoScore of the alive latents on the evaluation set"
    written = [Path(plot_score_histograms(scores, directory / HISTOGRAM_FILE, title=title))]
    for table in tables:
        path = plot_gallery(table, directory / gallery_file(table.name))
        if path is not None:
            written.append(Path(path))
    return written
