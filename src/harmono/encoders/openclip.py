"""CLIP image encoders in the ``open_clip`` format (``openclip``), loaded from local checkpoints only.

Feature extraction uses ``openclip_encoder(**kwargs)``; finetuning uses the backbone loader
``openclip_backbone(weights, source, image_size)``, where ``source`` is the architecture and
``weights`` a tag or a checkpoint file (``"pretrained"``: the default tag).

The MonoLoss paper's CLIP is ``open_clip``'s ``ViT-L-14`` with the DataComp-XL
weights (tag ``datacomp_xl_s13b_b90k``), the default here. Any other
``open_clip`` architecture and tag works the same way
(``open_clip.list_pretrained()``).

``weights="pretrained"`` resolves ``pretrained`` without a network call:

- a path to a checkpoint file (``.bin``, ``.pt``, ``.safetensors``), or
- an ``open_clip`` tag, looked up in the user's Hugging Face cache (tags
  hosted on the Hub; ``cache_dir`` overrides the cache) or in open_clip's
  URL cache ``~/.cache/clip`` (tags with a download URL, e.g. ``openai``).

A tag that is not cached raises ``FileNotFoundError`` saying what to fetch:
harmono never downloads. ``weights="random"`` builds the architecture with
random weights (``overrides`` can shrink it, e.g. for tests).

The feature is the projected image embedding (``model.encode_image``,
unnormalised). Only the image tower is kept. ``pip install open_clip_torch``
(``harmono[openclip]``) installs ``open_clip`` with ``timm`` and
``torchvision``; with the CPU build of torch, install them under the
project's constraints file (``torchvision==0.28.0``), and harmono makes
torchvision importable (see ``harmono.core.torchvision_shim``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import torch

from harmono.core import checks
from harmono.core.torchvision_shim import make_torchvision_importable
from harmono.encoders.base import WEIGHTS, Encoder

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "datacomp_xl_s13b_b90k"
URL_CACHE = Path("~/.cache/clip")
"""Where open_clip keeps checkpoints it fetched by URL."""


def _open_clip() -> ModuleType:
    checks.require_package(
        "open_clip",
        "the openclip encoder",
        "pip install 'harmono[openclip]' (with the CPU build of torch, add --constraint constraints.txt "
        "to keep torchvision==0.28.0)",
    )
    make_torchvision_importable()
    return importlib.import_module("open_clip")


def _hub_candidates(filename: str, weights_name: str, safe_weights_name: str) -> list[str]:
    """The file names open_clip tries for a Hub checkpoint, safetensors first."""
    if filename == weights_name:
        return [safe_weights_name, filename]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]


def cached_checkpoint(tag_config: dict, cache_dir: str | None = None) -> str | None:
    """Path of the locally cached checkpoint of an ``open_clip`` tag, or None. Never downloads.

    Parameters
    ----------
    tag_config : dict
        ``open_clip.get_pretrained_cfg(model, tag)``.
    cache_dir : str, optional
        Hugging Face / URL cache to look in instead of the default ones.
    """
    if tag_config.get("file"):
        return tag_config["file"] if os.path.isfile(tag_config["file"]) else None
    if tag_config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(tag_config["hf_hub"])  # "org/repo/" or "org/repo/file"
        for name in _hub_candidates(filename or HF_WEIGHTS_NAME, HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME):
            path = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    if tag_config.get("url"):
        path = Path(cache_dir or URL_CACHE).expanduser() / os.path.basename(tag_config["url"])
        if path.is_file():
            return str(path)
    return None


def openclip_encoder(
    model: str = DEFAULT_MODEL,
    pretrained: str = DEFAULT_PRETRAINED,
    weights: str = "pretrained",
    image_size: int | None = None,
    cache_dir: str | None = None,
    overrides: dict | None = None,
) -> Encoder:
    """An ``open_clip`` CLIP image tower as an ``Encoder`` (see the module docstring).

    Parameters
    ----------
    model : str
        ``open_clip`` architecture name (``open_clip.list_models()``).
    pretrained : str
        An ``open_clip`` tag of ``model`` or the path of a checkpoint file.
    weights : {"pretrained", "random"}
        Load the checkpoint, or build the architecture with random weights.
    image_size : int, optional
        Input side (default: the architecture's).
    cache_dir : str, optional
        Cache to look for tagged checkpoints in (default: Hugging Face's and ``~/.cache/clip``).
    overrides : dict, optional
        Architecture overrides passed to ``open_clip.create_model`` (e.g. ``vision_cfg``).

    Returns
    -------
    Encoder
        ``features(pixels (B, 3, S, S)) -> (B, embed_dim)``.
    """
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    open_clip = _open_clip()
    if model not in open_clip.list_models():
        raise ValueError(f"open_clip has no architecture {model!r}; see open_clip.list_models()")
    tag_config = open_clip.get_pretrained_cfg(model, pretrained) if not os.path.isfile(pretrained) else {}
    checkpoint = None
    if weights == "pretrained":
        if os.path.isfile(pretrained):
            checkpoint = pretrained
        elif not tag_config:
            raise ValueError(
                f"pretrained must be a checkpoint file or a tag of {model} "
                f"({', '.join(open_clip.list_pretrained_tags_by_model(model))}), got {pretrained!r}"
            )
        else:
            checkpoint = cached_checkpoint(tag_config, cache_dir)
            if checkpoint is None:
                where = tag_config.get("hf_hub") or tag_config.get("url")
                raise FileNotFoundError(
                    f"openclip: no local copy of {model}/{pretrained} ({where}). harmono never downloads: "
                    "put the checkpoint in your Hugging Face cache (or ~/.cache/clip for URL tags) "
                    "or pass pretrained= the path of the checkpoint file"
                )
    clip = open_clip.create_model(
        model,
        pretrained=checkpoint,
        force_quick_gelu=bool(tag_config.get("quick_gelu", False)),
        force_image_size=image_size,
        **(overrides or {}),
    )
    visual = clip.visual.eval()
    preprocess = {**open_clip.get_model_preprocess_cfg(clip), **tag_config}
    side = preprocess["size"]
    side = side[0] if isinstance(side, (tuple, list)) else side
    mean = tuple(preprocess.get("mean") or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(preprocess.get("std") or open_clip.OPENAI_DATASET_STD)
    with torch.no_grad():
        dim = visual(torch.zeros(1, 3, side, side)).shape[-1]
    return Encoder(
        name="openclip",
        model=visual,
        features=visual,
        feature_dim=int(dim),
        output="projected",
        image_size=int(side),
        mean=mean,
        std=std,
        weights=checkpoint or "random",
    )


def openclip_backbone(weights: str, source: str, image_size: int | None) -> Encoder:
    """An ``open_clip`` image tower as a trainable backbone.

    Parameters
    ----------
    weights : str
        ``"pretrained"`` (the tag ``DEFAULT_PRETRAINED``), ``"random"``, or an ``open_clip``
        tag or checkpoint file to load.
    source : str
        ``open_clip`` architecture ("" for ``DEFAULT_MODEL``).
    image_size : int, optional
        Input side (default: the architecture's).

    Returns
    -------
    Encoder
        As ``openclip_encoder``.
    """
    pretrained = DEFAULT_PRETRAINED if weights in WEIGHTS else weights
    mode = "random" if weights == "random" else "pretrained"
    return openclip_encoder(source or DEFAULT_MODEL, pretrained, mode, image_size)
