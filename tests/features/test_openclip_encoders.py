"""Wiring of the open_clip CLIP loader with a tiny architecture (no weights, no download)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harmono.encoders.registry import load_encoder

open_clip = pytest.importorskip(
    "open_clip", reason="open_clip is not installed (pip install 'harmono[openclip]')"
)

MODEL = "ViT-B-32"
TINY = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32, patch_size=8),
    text_cfg=dict(context_length=8, vocab_size=100, width=32, heads=2, layers=1),
)
IMAGES = [
    np.random.default_rng(0).integers(0, 256, (20, 20)).astype(np.uint8),
    np.random.default_rng(1).integers(0, 256, (30, 28, 3)).astype(np.uint8),
]


def _tiny_clip(seed: int, quick_gelu: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(MODEL, pretrained=None, force_quick_gelu=quick_gelu, **TINY).eval()


def _reference_features(clip: torch.nn.Module, encoder) -> torch.Tensor:
    with torch.no_grad():
        return clip.encode_image(encoder.preprocess(IMAGES))


def _fake_hub_cache(root, repo: str, filename: str, state: dict) -> None:
    """The layout huggingface_hub's cache uses: models--org--name/{refs/main, snapshots/<rev>/file}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / filename))


def test_random_weights_wiring():
    encoder = load_encoder("openclip", model=MODEL, weights="random", overrides=TINY)
    assert (encoder.feature_dim, encoder.output, encoder.image_size) == (16, "projected", 32)
    assert encoder.mean == tuple(open_clip.OPENAI_DATASET_MEAN) and encoder.weights == "random"
    features = encoder.encode(IMAGES)
    assert features.shape == (2, 16) and torch.isfinite(features).all()
    with torch.no_grad():
        torch.testing.assert_close(features, encoder.model(encoder.preprocess(IMAGES)))


def test_checkpoint_file_round_trip(tmp_path):
    clip = _tiny_clip(seed=3)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    torch.manual_seed(99)  # the loader's random init must be overwritten by the checkpoint
    encoder = load_encoder("openclip", model=MODEL, pretrained=str(path), overrides=TINY)
    assert encoder.weights == str(path)
    torch.testing.assert_close(encoder.encode(IMAGES), _reference_features(clip, encoder))


def test_tag_resolves_from_the_hub_cache(tmp_path):
    clip = _tiny_clip(seed=4)
    config = open_clip.get_pretrained_cfg(MODEL, "datacomp_xl_s13b_b90k")
    repo = config["hf_hub"].rstrip("/")
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    _fake_hub_cache(tmp_path, repo, "open_clip_model.safetensors", state)
    encoder = load_encoder(
        "openclip", model=MODEL, pretrained="datacomp_xl_s13b_b90k", cache_dir=str(tmp_path), overrides=TINY
    )
    assert encoder.mean == tuple(config["mean"])
    torch.testing.assert_close(encoder.encode(IMAGES), _reference_features(clip, encoder))


def test_url_tag_resolves_from_the_url_cache_with_its_activation(tmp_path):
    clip = _tiny_clip(seed=5, quick_gelu=True)
    config = open_clip.get_pretrained_cfg(MODEL, "openai")
    assert config["quick_gelu"] and config["url"]
    torch.save(clip.state_dict(), tmp_path / config["url"].rsplit("/", 1)[1])
    encoder = load_encoder(
        "openclip", model=MODEL, pretrained="openai", cache_dir=str(tmp_path), overrides=TINY
    )
    expected = _reference_features(clip, encoder)
    torch.testing.assert_close(encoder.encode(IMAGES), expected)
    plain_gelu = _tiny_clip(seed=0)
    plain_gelu.load_state_dict(clip.state_dict())
    assert not torch.allclose(_reference_features(plain_gelu, encoder), expected)


def test_pretrained_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="harmono never downloads"):
        load_encoder("openclip", cache_dir=str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="ViT-Nope"), "no architecture 'ViT-Nope'"),
        (dict(model=MODEL, pretrained="not-a-tag"), "a tag of ViT-B-32"),
        (dict(weights="imagenet"), "weights must be 'pretrained' or 'random'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_encoder("openclip", **kwargs)
