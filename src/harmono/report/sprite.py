"""Many small images packed into one PNG (a sprite sheet), for pages that show thousands of thumbnails."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sprite:
    """A grid of equal square tiles in one PNG."""

    png: bytes
    """The encoded sheet."""
    tile: int
    """Side of a tile in pixels."""
    columns: int
    """Tiles per row of the sheet."""
    count: int
    """Tiles in the sheet (tile ``i`` sits at row ``i // columns``, column ``i % columns``)."""

    @property
    def rows(self) -> int:
        """Rows of tiles in the sheet."""
        return -(-self.count // self.columns)


def _as_tile(image: np.ndarray, tile: int, rgb: bool) -> np.ndarray:
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(
            f"expected uint8 images of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
        )
    picture = Image.fromarray(image)
    if rgb and picture.mode != "RGB":
        picture = picture.convert("RGB")
    if picture.size != (tile, tile):
        picture = picture.resize((tile, tile), Image.Resampling.BILINEAR)
    return np.asarray(picture)


def make_sprite(images: Sequence[np.ndarray], tile: int = 28, columns: int = 64) -> Sprite:
    """Pack ``images`` into a sprite sheet, each resized to ``tile`` x ``tile``.

    Parameters
    ----------
    images : sequence of np.ndarray
        uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` RGB images; the sheet is RGB when any is.
    tile : int
        Side of a tile in pixels.
    columns : int
        Tiles per row (fewer when there are fewer images).

    Returns
    -------
    Sprite
    """
    from PIL import Image

    if not images:
        raise ValueError("expected at least one image for a sprite, got none")
    if tile < 1 or columns < 1:
        raise ValueError(f"expected tile >= 1 and columns >= 1, got {tile}, {columns}")
    rgb = any(np.ndim(image) == 3 for image in images)
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * tile, columns * tile, 3) if rgb else (rows * tile, columns * tile), np.uint8)
    for index, image in enumerate(images):
        top, left = (index // columns) * tile, (index % columns) * tile
        sheet[top : top + tile, left : left + tile] = _as_tile(image, tile, rgb)
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=True)
    return Sprite(buffer.getvalue(), tile, columns, len(images))
