"""Batched image augmentation on any device, reproducible from a seed and a step.

Random parameters are drawn on the CPU with ``numpy.random.default_rng((seed,
step))``, so a batch is augmented the same way on every device and after a
resume. The pixel work (``grid_sample``, masks) runs where the batch is.

- ``crop_flip``: random resized crop (area in ``[min_scale, 1]``, aspect
  ratio in ``[3/4, 4/3]``, resampled to the input side) and horizontal flip
  with probability 1/2, by one affine ``grid_sample`` per batch.
- ``mix_batch``: mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) with
  the batch rolled by one, as torchvision's reference scripts do; the loss is
  ``lam * L(y) + (1 - lam) * L(y_rolled)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = ("crop-flip", "flip", "none")


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of the random parameters of training step ``step``."""
    return np.random.default_rng((seed, step))


def crop_flip(
    pixels: torch.Tensor, rng: np.random.Generator, min_scale: float = 0.35, crop: bool = True
) -> torch.Tensor:
    """Random resized crop (if ``crop``) and horizontal flip of ``pixels (B, C, S, S)``; same shape.

    Parameters
    ----------
    pixels : torch.Tensor
        ``(B, C, H, W)`` float images.
    rng : numpy.random.Generator
        Source of the per-image parameters.
    min_scale : float
        Smallest crop area as a fraction of the image.
    crop : bool
        Crop; with ``False`` only flip.
    """
    if pixels.ndim != 4 or not pixels.is_floating_point():
        raise ValueError(
            f"expected float pixels of shape (B, C, H, W), got {pixels.dtype} {tuple(pixels.shape)}"
        )
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must lie in (0, 1], got {min_scale}")
    batch = pixels.shape[0]
    flip = np.where(rng.random(batch) < 0.5, -1.0, 1.0)
    if crop:
        area = rng.uniform(min_scale, 1.0, batch)
        ratio = np.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3), batch))
        width = np.minimum(np.sqrt(area * ratio), 1.0)
        height = np.minimum(np.sqrt(area / ratio), 1.0)
        center_x = rng.uniform(-1.0, 1.0, batch) * (1.0 - width)
        center_y = rng.uniform(-1.0, 1.0, batch) * (1.0 - height)
    else:
        width = height = np.ones(batch)
        center_x = center_y = np.zeros(batch)
    theta = np.zeros((batch, 2, 3))
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, center_x
    theta[:, 1, 1], theta[:, 1, 2] = height, center_y
    theta = torch.as_tensor(theta, dtype=pixels.dtype, device=pixels.device)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class MixedBatch(NamedTuple):
    """A mixed batch: ``pixels (B, C, H, W)``, second targets ``(B,)``, weight ``lam`` of the first ones."""

    pixels: torch.Tensor
    other_labels: torch.Tensor
    lam: float


def mix_batch(
    pixels: torch.Tensor,
    labels: torch.Tensor,
    rng: np.random.Generator,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> MixedBatch:
    """Mixup or CutMix of a batch with itself rolled by one (one of the two, chosen evenly, if both are on).

    ``lam ~ Beta(alpha, alpha)``; for CutMix a box of area ``1 - lam`` is
    pasted and ``lam`` becomes the area actually kept. With both alphas 0
    the batch is returned unchanged with ``lam = 1``.
    """
    if not (mixup_alpha >= 0 and cutmix_alpha >= 0):  # NaN fails both
        raise ValueError(f"alphas must be >= 0, got mixup {mixup_alpha}, cutmix {cutmix_alpha}")
    choices = [name for name, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha > 0]
    if not choices:
        return MixedBatch(pixels, labels, 1.0)
    kind = choices[int(rng.integers(len(choices)))]
    other = pixels.roll(1, dims=0)
    other_labels = labels.roll(1, dims=0)
    if kind == "mixup":
        lam = float(rng.beta(mixup_alpha, mixup_alpha))
        return MixedBatch(lam * pixels + (1.0 - lam) * other, other_labels, lam)
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha))
    height, width = pixels.shape[-2:]
    side = math.sqrt(1.0 - lam)
    box_h, box_w = int(round(height * side)), int(round(width * side))
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    mixed = pixels.clone()
    mixed[..., top : top + box_h, left : left + box_w] = other[..., top : top + box_h, left : left + box_w]
    return MixedBatch(mixed, other_labels, 1.0 - box_h * box_w / (height * width))
