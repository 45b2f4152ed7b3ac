"""The MonoLoss paper's encoders (``clip``, ``siglip2``, ``vit``, ``dinov2``), loaded with ``transformers``.

They load from local weights only, for feature extraction (``hf_encoder(name, **kwargs)``) and
as finetuning backbones (``hf_backbone(name, weights, source, image_size)``).

| name | default checkpoint | feature |
|---|---|---|
| ``clip`` | ``laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K`` | projected image embedding |
| ``siglip2`` | ``google/siglip2-so400m-patch14-384`` | pooled (attention-pooling head) output |
| ``vit`` | ``google/vit-large-patch16-224`` (supervised) | CLS token of the last hidden state |
| ``dinov2`` | ``facebook/dinov2-base`` | CLS token after the final layer norm |

The CLIP-ViT-B/32 of the MonoLoss finetuning recipe is the backbone ``clip`` with
``source="openai/clip-vit-base-patch32"``.

Images are fed at the checkpoint's native size (224 for DINOv2, whose config
says 518, as in its reference preprocessing) unless ``image_size`` asks for
another; the position embeddings are then interpolated. Half-precision
checkpoints are loaded in float32.

``weights="pretrained"`` loads ``source`` (a checkpoint name in the user's
Hugging Face cache, or a local directory) with ``local_files_only=True``: it
never downloads. ``weights="random"`` builds the architecture from ``config``
(or the local config of ``source``) with random weights. The CLIP checkpoint
must be in the ``transformers`` format (LAION's repositories ship it beside
the ``open_clip`` files; ``openclip`` in ``harmono.encoders.openclip``
reads the ``open_clip`` files themselves). Images are resized bilinearly with antialiasing;
the official preprocessing of CLIP resizes bicubically, so features can
differ slightly from the reference pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from harmono.core import checks
from harmono.encoders.base import HALF, IMAGENET_MEAN, IMAGENET_STD, WEIGHTS, Encoder

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


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
    native_size: int | None = None
    """Input side the checkpoint is used at (None: the config's ``image_size``)."""
    model_kwargs: tuple[tuple[str, object], ...] = ()
    """Extra constructor arguments (e.g. no ViT pooler, which the checkpoint does not train)."""
    interpolates_always: bool = False
    """The model interpolates position embeddings itself (no ``interpolate_pos_encoding`` argument)."""


class HFFeatures(torch.nn.Module):
    """``read(model(pixel_values=pixels, **extra))``: ``(B, 3, S, S)`` -> ``(B, D)``.

    A module rather than a closure, so a copy of a network holding it
    (``copy.deepcopy``, an EMA) reads its own copy of ``model``.
    """

    def __init__(self, model: torch.nn.Module, read: Callable, extra: dict) -> None:
        super().__init__()
        self.model, self.read, self.extra = model, read, dict(extra)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The features the spec reads from the model's outputs."""
        return self.read(self.model(pixel_values=pixels, **self.extra))


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
        model_kwargs=(("add_pooling_layer", False),),
    ),
    "dinov2": HFEncoderSpec(
        "Dinov2Model", "Dinov2Config", "facebook/dinov2-base",
        "cls", IMAGENET_MEAN, IMAGENET_STD, lambda out: out.pooler_output, "hidden_size",
        native_size=224, interpolates_always=True,
    ),
}  # fmt: skip
"""Name -> how to load it."""


def _local_config(transformers: ModuleType, spec: HFEncoderSpec, source: str) -> object:
    """The vision config of ``source``, from local files only.

    A full CLIP checkpoint keeps ``projection_dim`` at its top level; the
    vision config is given it, since the vision model reads it there.
    """
    config = getattr(transformers, spec.config_class).from_pretrained(source, local_files_only=True)
    if spec.config_class == "CLIPVisionConfig":
        full = transformers.AutoConfig.from_pretrained(source, local_files_only=True)
        if getattr(full, "model_type", None) == "clip":
            config.projection_dim = full.projection_dim
    return config


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
        Input side (default: the checkpoint's native size; see the module docstring).
    config : transformers config, optional
        For ``weights="random"``: the architecture (default: ``source``'s local config).
    """
    if name not in HF_ENCODERS:
        raise ValueError(f"encoder must be one of {tuple(HF_ENCODERS)}, got {name!r}")
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    checks.require_package("transformers", f"the {name} encoder", "pip install transformers")
    transformers = importlib.import_module("transformers")
    spec = HF_ENCODERS[name]
    source = source or spec.source
    model_class = getattr(transformers, spec.model_class)
    model_kwargs = dict(spec.model_kwargs)
    try:
        if weights == "random":
            config = config or _local_config(transformers, spec, source)
            model = model_class(config, **model_kwargs)
        else:
            config = _local_config(transformers, spec, source)
            model = model_class.from_pretrained(source, config=config, local_files_only=True, **model_kwargs)
    except OSError as err:
        raise FileNotFoundError(
            f"{name}: no local copy of {source!r} ({err.__class__.__name__}). harmono never downloads: "
            "put the checkpoint in your Hugging Face cache or pass source= a local directory"
        ) from err
    model.float().eval()
    config = model.config
    native = spec.native_size or int(config.image_size)
    side = int(image_size or native)
    extra = (
        {"interpolate_pos_encoding": True}
        if side != config.image_size and not spec.interpolates_always
        else {}
    )

    return Encoder(
        name=name,
        model=model,
        features=HFFeatures(model, spec.read, extra),
        feature_dim=int(getattr(config, spec.dim_attribute)),
        output=spec.output,
        image_size=side,
        mean=spec.mean,
        std=spec.std,
        weights=source if weights == "pretrained" else "random",
    )


def hf_backbone(name: str, weights: str, source: str, image_size: int | None) -> Encoder:
    """One of ``HF_ENCODERS`` as a trainable backbone.

    Parameters
    ----------
    name : str
        A key of ``HF_ENCODERS``.
    weights : {"pretrained", "random"}
        Load the checkpoint, or build its architecture with random weights (a local
        checkpoint directory goes in ``source``).
    source : str
        Checkpoint name or local directory ("" for the paper's checkpoint).
    image_size : int, optional
        Input side (default: the checkpoint's native size).

    Returns
    -------
    Encoder
        As ``hf_encoder``.
    """
    if weights not in WEIGHTS:
        raise ValueError(
            f"{name}: weights must be one of {WEIGHTS} (a local checkpoint directory goes in source), "
            f"got {weights!r}"
        )
    return hf_encoder(name, source=source or None, weights=weights, image_size=image_size)
