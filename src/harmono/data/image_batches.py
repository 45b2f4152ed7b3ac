"""Square uint8 image batches of an ``ImageSet`` for training: subsets, epoch orders and a loader.

Images are resized (shorter side to ``S``, bilinear with antialiasing) and
center-cropped to ``S x S``, grayscale replicated to RGB, and kept as uint8
until they reach the device: ``(B, 3, S, S)``. Orders are seeded
permutations, so an epoch is read the same way after a resume and is split
between ``torchrun`` ranks without overlap.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from harmono.data.images import ImageSet


def stratified_subset(
    labels: np.ndarray, size: int, seed: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of ``size`` samples, as evenly spread over the classes as they allow.

    Parameters
    ----------
    labels : np.ndarray
        ``(N,)`` class indices.
    size : int
        Samples wanted (0: all that are not excluded).
    seed : int
        Which samples of each class are drawn.
    exclude : np.ndarray, optional
        Indices never drawn (e.g. a training subset taken from the same split).
    """
    if size < 0:
        raise ValueError(f"expected a subset size >= 0, got {size}")
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[exclude] = False
    available = int(allowed.sum())
    if size == 0:
        return np.flatnonzero(allowed)
    if size > available:
        raise ValueError(f"expected a subset of at most {available} samples, got size {size}")
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(allowed & (labels == c))) for c in np.unique(labels[allowed])]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < size:  # round robin over the classes, smallest classes run out first
        row = [int(pool[depth]) for pool in pools if depth < len(pool)]
        chosen.extend(row[: size - len(chosen)])
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def square_image(image: np.ndarray, side: int) -> torch.Tensor:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` -> uint8 ``(3, side, side)``: shorter side resized, center crop."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected a uint8 image (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    pixels = torch.from_numpy(image.astype(np.float32))
    pixels = pixels[None].expand(3, -1, -1) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
    height, width = pixels.shape[1:]
    scale = side / min(height, width)
    size = (max(side, round(height * scale)), max(side, round(width * scale)))
    if size != (height, width):
        pixels = F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True, align_corners=False)[
            0
        ]
    top, left = (size[0] - side) // 2, (size[1] - side) // 2
    return pixels[:, top : top + side, left : left + side].round().clamp(0, 255).to(torch.uint8)


class SquareImages(Dataset):
    """Samples ``indices`` of ``images`` as ``(uint8 (3, S, S), label, position)``."""

    def __init__(self, images: ImageSet, indices: np.ndarray, side: int) -> None:
        self.images, self.indices, self.side = images, np.asarray(indices, dtype=np.int64), side
        self.labels = torch.as_tensor(images.labels[self.indices], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        """Position ``position`` of the subset."""
        index = int(self.indices[position])
        return square_image(self.images.image(index), self.side), int(self.labels[position]), position


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of ``range(size)`` for ``epoch``."""
    return np.random.default_rng((seed, epoch)).permutation(size)


def rank_batches(
    order: np.ndarray, batch_size: int, rank: int, world: int, drop_last: bool
) -> list[np.ndarray]:
    """Each global batch of ``order`` cut into ``world`` slices; rank ``r`` gets the ``r``-th of each.

    With ``drop_last`` only full global batches are kept (training); without
    it the tail is split as evenly as it goes (evaluation: every sample once).
    """
    if batch_size % world:
        raise ValueError(f"batch_size must be divisible by the world size {world}, got {batch_size}")
    local = batch_size // world
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        if len(chunk) < batch_size:
            if drop_last:
                break
            chunk = np.array_split(chunk, world)[rank]
            if len(chunk):
                batches.append(chunk)
            continue
        batches.append(chunk[rank * local : (rank + 1) * local])
    return batches


def load_batches(dataset: SquareImages, batches: list[np.ndarray], workers: int) -> Iterator[tuple]:
    """``(uint8 (B, 3, S, S), labels (B,), positions (B,))`` for each batch of positions, in order."""
    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=workers)
    yield from loader
