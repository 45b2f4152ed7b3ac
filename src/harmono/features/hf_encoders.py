"""The MonoLoss paper's encoders, loaded with ``transformers`` from local weights only.

| name | default checkpoint | feature |
|---|---|---|
| ``clip`` | ``laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K`` | projected image embedding |
| ``siglip2`` | ``google/siglip2-so400m-patch14-384`` | pooled (attention-pooling head) output |
| ``vit`` | ``google/vit-large-patch16-224`` (supervised) | CLS token of the last hidden state |
| ``dinov2`` | ``facebook/dinov2-base`` | CLS token after the final layer norm |

``weights="pretrained"`` loads ``source`` (a checkpoint name in the user's
Hugging Face cache, or a local directory) with ``local_files_only=True``: it
never downloads. ``weights="random"`` builds the architecture from ``config``
(or the local config of ``source``) with random weights. The CLIP checkpoint
must be in the ``transformers`` format (LAION's repositories ship it beside
the ``open_clip`` files). Images are resized bilinearly with antialiasing;
the official preprocessing of CLIP resizes bicubically, so features can
differ slightly from the reference pipeline.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harmono.features.encoders import Encoder

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class HFEncoderSpec:
    """How to load and read one encoder family with ``transformers``."""

    model_class: str
    """``transformers`` model class."""
    config_class: str
    """``transformers`` config class."""
    source: str
    """Default checkpoint."""
    output: str
    """``"pooled"``, ``"cls"`` or ``"projected"``."""
    mean: tuple[float, float, float]
    """Per-channel normalisation mean."""
    std: tuple[float, float, float]
    """Per-channel normalisation std."""
    read: Callable
    """``read(model_outputs) -> (B, D)`` features."""
    dim_attribute: str
    """Config attribute holding ``D``."""


HF_ENCODERS: dict[str, HFEncoderSpec] = {
    "clip": HFEncoderSpec(
        "CLIPVisionModelWithProjection", "CLIPVisionConfig", "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K",
        "projected", CLIP_MEAN, CLIP_STD, lambda out: out.image_embeds, "projection_dim",
    ),
    "siglip2": HFEncoderSpec(
        "SiglipVisionModel", "SiglipVisionConfig", "google/siglip2-so400m-patch14-384",
        "pooled", HALF, HALF, lambda out: out.pooler_output, "hidden_size",
    ),
    "vit": HFEncoderSpec(
        "ViTModel", "ViTConfig", "google/vit-large-patch16-224",
        "cls", HALF, HALF, lambda out: out.last_hidden_state[:, 0], "hidden_size",
    ),
    "dinov2": HFEncoderSpec(
        "Dinov2Model", "Dinov2Config", "facebook/dinov2-base",
        "cls", IMAGENET_MEAN, IMAGENET_STD, lambda out: out.pooler_output, "hidden_size",
    ),
}  # fmt: skip
"""Name -> how to load it."""


def hf_encoder(
    name: str,
    source: str | None = None,
    weights: str = "pretrained",
    image_size: int | None = None,
    config: object | None = None,
) -> Encoder:
    """One of ``HF_ENCODERS`` as an ``Encoder`` (see the module docstring).

    Parameters
    ----------
    name : str
        A key of ``HF_ENCODERS``.
    source : str, optional
        Checkpoint name or local directory (default: the paper's checkpoint).
    weights : {"pretrained", "random"}
        Load the checkpoint, or build the architecture with random weights.
    image_size : int, optional
        Input side (default: the config's ``image_size``).
    config : transformers config, optional
        For ``weights="random"``: the architecture (default: ``source``'s local config).
    """
    if name not in HF_ENCODERS:
        raise ValueError(f"encoder must be one of {tuple(HF_ENCODERS)}, got {name!r}")
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    if importlib.util.find_spec("transformers") is None:
        raise ModuleNotFoundError(
            f"the {name} encoder needs the package 'transformers': pip install transformers"
        )
    transformers = importlib.import_module("transformers")
    spec = HF_ENCODERS[name]
    source = source or spec.source
    model_class = getattr(transformers, spec.model_class)
    try:
        if weights == "random":
            config = config or getattr(transformers, spec.config_class).from_pretrained(
                source, local_files_only=True
            )
            model = model_class(config)
        else:
            model = model_class.from_pretrained(source, local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(
            f"{name}: no local copy of {source!r} ({err.__class__.__name__}). harmono never downloads: "
            "put the checkpoint in your Hugging Face cache or pass source= a local directory"
        ) from err
    model.eval()
    config = model.config

    def features(pixels: torch.Tensor) -> torch.Tensor:
        return spec.read(model(pixel_values=pixels))

    return Encoder(
        name=name,
        model=model,
        features=features,
        feature_dim=int(getattr(config, spec.dim_attribute)),
        output=spec.output,
        image_size=int(image_size or config.image_size),
        mean=spec.mean,
        std=spec.std,
        weights=source if weights == "pretrained" else "random",
    )
