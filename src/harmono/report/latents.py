"""The latent browser's data: per latent its scores and a sprite of the images that activate it most."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from harmono.analysis.latent_table import LatentTable
from harmono.report.sprite import Sprite, make_sprite

logger = logging.getLogger("harmono")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _snippets(table: LatentTable, latent: int) -> list[dict]:
    """The text view of a latent's top tokens (see ``browser_payload``)."""
    snippets = []
    for example, activations in enumerate(table.neighbours[latent]):
        row = int(table.top_rows[latent, example])
        if row < 0:
            break
        shades = [None if np.isnan(value) else round(float(value), 3) for value in activations]
        snippets.append({"w": table.texts(row), "a": shades, "c": len(activations) // 2})
    return snippets


def browser_payload(tables: Sequence[LatentTable], tile: int = 28) -> tuple[dict, Sprite | None]:
    """The JSON the page's latent browser reads, and the sprite of every thumbnail it shows.

    Each latent entry holds ``m`` (index of its SAE in ``models``), ``i``
    (latent), ``s`` (MonoScore or null), ``f`` (firing frequency), ``c``
    (dominant class or null), ``pb``/``pw`` (binary/weighted purity), ``t``
    (sprite tiles of its top images, strongest first) and ``v`` (their
    activations); for a token store ``x``: its top tokens as text snippets,
    each ``{"w": tokens, "a": the latent's activation on each (null:
    unknown), "c": index of the top token}``.
    """
    tiles: dict[tuple[int, int], int] = {}
    pictures: list[np.ndarray] = []
    entries = []
    for model, table in enumerate(tables):
        for row in table.latents:
            latent = int(row["latent"])
            entry = {
                "m": model,
                "i": latent,
                "s": _rounded(row["mono_score"], 4),
                "f": _rounded(row["frequency"], 5),
                "c": row.get("dominant_class"),
                "pb": _rounded(row.get("purity_binary"), 3),
                "pw": _rounded(row.get("purity_weighted"), 3),
                "t": [],
                "v": [],
            }
            if table.texts is not None and table.top_rows is not None and table.neighbours is not None:
                entry["x"] = _snippets(table, latent)
            if table.images is not None and table.top_rows is not None:
                for store_row, value in zip(table.top_rows[latent], table.top_values[latent], strict=True):
                    if store_row < 0:
                        break
                    key = (model, int(store_row))
                    if key not in tiles:
                        tiles[key] = len(pictures)
                        pictures.append(table.images(int(store_row)))
                    entry["t"].append(tiles[key])
                    entry["v"].append(round(float(value), 3))
            entries.append(entry)
    sprite = make_sprite(pictures, tile=tile) if pictures else None
    payload = {
        "models": [table.name for table in tables],
        "notes": [table.images_note for table in tables],
        "latents": entries,
        "sprite": None
        if sprite is None
        else {"tile": sprite.tile, "columns": sprite.columns, "rows": sprite.rows},
    }
    return payload, sprite
