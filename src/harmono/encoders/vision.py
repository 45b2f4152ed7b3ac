"""Convolutional and vision-transformer backbones from ``timm`` and ``torchvision``, and ``tiny-cnn``.

These are finetuning backbones only (no feature-extraction loader); each returns a pooled
``Encoder`` in eval mode, from local weights only (harmono never downloads):

- ``timm:<model>`` (``timm_backbone``): any ``timm`` model, its classifier removed;
  ``weights`` is a checkpoint file, ``"pretrained"`` (the timm weights, read from the
  local Hugging Face cache only) or ``"random"``.
- ``torchvision:<model>`` (``torchvision_backbone``): any ``torchvision.models``
  classifier, its last linear layer removed; ``weights`` is a state-dict file,
  ``"pretrained"`` (the model's ``DEFAULT`` weights file in the torch hub cache) or
  ``"random"``. The MonoLoss ResNet-50 recipe is ``torchvision:resnet50``.
- ``tiny-cnn`` (``tiny_cnn_backbone``): a small randomly initialised convolutional
  network (32-d features) for tests and smoke runs on synthetic images.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from harmono.core import checks
from harmono.encoders.base import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    pooled_encoder,
    read_state_dict,
    weights_file,
)

TINY_SIZE = 32
"""Default input side of ``tiny-cnn``."""


def timm_backbone(model: str, weights: str, image_size: int | None) -> Encoder:
    """The ``timm`` model ``model`` without its classifier, as the backbone ``timm:<model>``.

    Parameters
    ----------
    model : str
        A ``timm`` model name (``timm.list_models()``).
    weights : str
        ``"pretrained"`` (local Hugging Face cache only), ``"random"`` or a checkpoint file.
    image_size : int, optional
        Input side (default: the model's pretrained configuration).
    """
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    checks.require_package("timm", f"the backbone timm:{model}", "pip install timm")
    import timm

    if model not in timm.list_models():
        raise ValueError(f"timm has no model {model!r}; see timm.list_models()")
    options: dict[str, object] = {"num_classes": 0}
    if weights == "pretrained":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the local cache only
        options["pretrained"] = True
    elif weights != "random":
        options.update(pretrained=True, pretrained_cfg_overlay={"file": weights_file(weights, model)})
    try:
        network = timm.create_model(model, **options)
    except OSError as err:
        raise FileNotFoundError(
            f"timm:{model}: no local copy of its pretrained weights ({err.__class__.__name__}); harmono "
            "never downloads: pass weights= the path of the checkpoint file"
        ) from err
    cfg = network.pretrained_cfg
    size = image_size or cfg.get("input_size", (3, 224, 224))[-1]
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    return pooled_encoder(f"timm:{model}", network, network.num_features, size, mean, std, weights)


def _drop_last_linear(model: nn.Module, arch: str) -> int:
    """Replace the classifier's last ``nn.Linear`` with the identity; return its input size."""
    for attribute in ("fc", "classifier", "heads", "head"):
        block = getattr(model, attribute, None)
        if isinstance(block, nn.Linear):
            setattr(model, attribute, nn.Identity())
            return block.in_features
        if isinstance(block, nn.Sequential) and isinstance(block[-1], nn.Linear):
            dim = block[-1].in_features
            block[-1] = nn.Identity()
            return dim
    raise ValueError(
        f"torchvision:{arch}: found no final linear layer (fc, classifier, heads, head) to remove"
    )


def torchvision_backbone(model: str, weights: str, image_size: int | None) -> Encoder:
    """The ``torchvision`` classifier ``model`` without its last linear layer: ``torchvision:<model>``.

    Parameters
    ----------
    model : str
        A ``torchvision.models`` classifier name (``torchvision.models.list_models()``).
    weights : str
        ``"pretrained"`` (the ``DEFAULT`` weights file in the torch hub cache), ``"random"``
        or a state-dict file (``.pth`` or ``.safetensors``).
    image_size : int, optional
        Input side (default 224).
    """
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    checks.require_package("torchvision", f"the backbone torchvision:{model}", "pip install torchvision")
    import torchvision

    if model not in torchvision.models.list_models(torchvision.models):
        raise ValueError(f"torchvision has no classifier {model!r}; see torchvision.models.list_models()")
    network = torchvision.models.get_model(model, weights=None)
    if weights != "random":
        if weights == "pretrained":
            url = torchvision.models.get_model_weights(model).DEFAULT.url
            path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
            if not path.is_file():
                raise FileNotFoundError(
                    f"torchvision:{model}: {path} is missing; harmono never downloads: put the DEFAULT "
                    f"weights there ({url}) or pass weights= the path of a state-dict file"
                )
        else:
            path = Path(weights_file(weights, model))
        network.load_state_dict(read_state_dict(path, f"torchvision:{model}"))
    dim = _drop_last_linear(network, model)
    size = image_size or 224
    return pooled_encoder(f"torchvision:{model}", network, dim, size, IMAGENET_MEAN, IMAGENET_STD, weights)


class TinyCNN(nn.Module):
    """Three strided 3x3 convolutions (8, 16, 32 channels) with ReLU, globally averaged: ``(B, 32)``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 32)``."""
        return self.layers(pixels).mean(dim=(2, 3))


def tiny_cnn_backbone(weights: str, source: str, image_size: int | None) -> Encoder:
    """``TinyCNN`` as the backbone ``tiny-cnn``.

    Parameters
    ----------
    weights : str
        ``"random"`` or a state-dict file (``"pretrained"`` is refused: there are none).
    source : str
        Unused.
    image_size : int, optional
        Input side (default ``TINY_SIZE``).
    """
    model = TinyCNN()
    if weights == "pretrained":
        raise ValueError("tiny-cnn has no pretrained weights: use weights='random' or a weights file")
    if weights != "random":
        model.load_state_dict(read_state_dict(weights_file(weights, "tiny-cnn"), "tiny-cnn"))
    return pooled_encoder("tiny-cnn", model, 32, image_size or TINY_SIZE, HALF, HALF, weights)
