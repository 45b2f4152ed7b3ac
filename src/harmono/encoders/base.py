"""What every encoder family shares: the ``Encoder`` record, its outputs, named weights and helpers.

An ``Encoder`` is a network with its preprocessing: ``features(pixels (B, 3, S, S)) -> (B, D)``,
the input side ``S`` and the normalisation of RGB values in ``[0, 1]``. ``Encoder.features`` is a
plain function of the network, so gradients flow through it and a classifier can finetune it;
``Encoder.encode`` embeds uint8 images for feature extraction.

The family modules (``efficientnet``, ``huggingface``, ``openclip``, ``vision``) build encoders
from this module only; ``harmono.encoders.registry`` names them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmono.core.io import read_safetensors, read_torch_pickle

OUTPUTS = ("pooled", "cls", "projected")
"""What an encoder's features are: a pooled feature map, a CLS token or a projected embedding."""
WEIGHTS = ("pretrained", "random")
"""Named backbone weights; anything else is the path of a weights file."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet-normalised inputs."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel std of ImageNet-normalised inputs."""
HALF = (0.5, 0.5, 0.5)
"""Mean and std that map ``[0, 1]`` to ``[-1, 1]``."""


@dataclass(frozen=True)
class Encoder:
    """A vision encoder ready to embed images.

    Attributes
    ----------
    name : str
        Registry name.
    model : nn.Module
        The network, in eval mode.
    features : nn.Module
        ``features(pixels (B, 3, S, S)) -> (B, feature_dim)``: ``model`` itself or a
        module holding it, so gradients flow and copies stay consistent.
    feature_dim : int
        ``D``.
    output : {"pooled", "cls", "projected"}
        Which output the features are.
    image_size : int
        ``S``, the side images are resized to.
    mean, std : tuple of float
        Per-channel normalisation of RGB values in ``[0, 1]``.
    weights : str
        Where the weights came from (``"imagenet"``, ``"random"``, a path).
    """

    name: str
    model: nn.Module
    features: nn.Module
    feature_dim: int
    output: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 images ``(H, W)`` or ``(H, W, 3)`` -> ``(B, 3, S, S)`` float32 pixels.

        Grayscale is replicated to 3 channels; each image is resized
        (bilinear, antialiased) to ``image_size`` and normalised.
        """
        size = (self.image_size, self.image_size)
        resized = []
        for position, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
                raise ValueError(
                    f"image {position}: expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
                )
            pixels = torch.from_numpy(image.copy()).float().div_(255.0)
            pixels = pixels[None].expand(3, -1, -1) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
            resized.append(F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True)[0])
        batch = torch.stack(resized)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch - mean) / std

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """``(B, feature_dim)`` float32 features of uint8 images."""
        device = next(self.model.parameters()).device
        return self.features(self.preprocess(images).to(device)).float()


ExtractLoader = Callable[..., Encoder]
"""A feature-extraction loader ``f(**kwargs) -> Encoder``; its keywords are the family's own."""
BackboneLoader = Callable[[str, str, int | None], Encoder]
"""A backbone loader ``f(weights, source, image_size) -> Encoder``: ``weights`` is one of ``WEIGHTS``
or a weights file, ``source`` a checkpoint or architecture ("" for the default), ``image_size`` the
input side (None for the default)."""


class PooledFeatures(nn.Module):
    """``model.extract_features(pixels)`` averaged over space: ``(B, 3, S, S)`` -> ``(B, C)``.

    A module rather than a closure, so a copy of a network holding it
    (``copy.deepcopy``, an EMA) reads its own copy of ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Global average of the last feature map."""
        return self.model.extract_features(pixels).mean(dim=(2, 3))


def weights_file(weights: str, name: str) -> str:
    """``weights`` itself if it is an existing file.

    Parameters
    ----------
    weights : str
        A backbone's ``weights`` argument that is none of ``WEIGHTS``.
    name : str
        The backbone, for the error message.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    """
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{name}: weights must be {' or '.join(map(repr, WEIGHTS))} or a weights file, "
            f"got {weights!r} (no such file)"
        )
    return weights


def pooled_encoder(
    name: str,
    model: nn.Module,
    dim: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    weights: str,
) -> Encoder:
    """An ``Encoder`` whose features are ``model``'s own (already pooled) output, in eval mode.

    Parameters
    ----------
    name : str
        Registry name.
    model : nn.Module
        ``pixels (B, 3, S, S) -> (B, dim)``.
    dim : int
        Feature size ``D``.
    size : int
        Input side ``S``.
    mean, std : sequence of float
        Per-channel normalisation.
    weights : str
        Where the weights came from.
    """
    model.eval()
    return Encoder(name, model, model, int(dim), "pooled", int(size), tuple(mean), tuple(std), weights)


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``.pth`` state dict, never running a pickle's code.

    Parameters
    ----------
    path : str or Path
        The weights file.
    what : str
        Whose weights they are, for the error (e.g. ``"EfficientNet"``).

    Raises
    ------
    ValueError
        Where the file is damaged or not a plain pickled state dict (see ``core.io.read_torch_pickle``).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    state = read_torch_pickle(path, f"{what} weights")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of {what} weights, got a {type(state).__name__}")
    return state
