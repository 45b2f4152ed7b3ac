"""Wiring of the paper's encoders with tiny random configs (no weights, no download)."""

import numpy as np
import pytest
import torch

from harmono.encoders.huggingface import CLIP_MEAN, HALF, IMAGENET_MEAN
from harmono.encoders.registry import load_encoder

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install 'harmono[encoders]')"
)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


def _last_layer(model, pixels):
    """Output of the last transformer layer, before any final norm or pooling."""
    return model(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]


def _clip_reference(model, pixels):
    cls = _last_layer(model, pixels)[:, 0]
    return model.visual_projection(model.vision_model.post_layernorm(cls))


def _siglip_reference(model, pixels):
    tower = getattr(model, "vision_model", model)
    return tower.head(tower.post_layernorm(_last_layer(model, pixels)))


CASES = {
    "clip": (lambda: transformers.CLIPVisionConfig(projection_dim=24, **TINY), 24, "projected", CLIP_MEAN, 32,
             _clip_reference),
    "siglip2": (lambda: transformers.SiglipVisionConfig(**TINY), 32, "pooled", HALF, 32, _siglip_reference),
    "vit": (lambda: transformers.ViTConfig(**TINY), 32, "cls", HALF, 32,
            lambda model, px: model.layernorm(_last_layer(model, px))[:, 0]),
    "dinov2": (lambda: transformers.Dinov2Config(**TINY), 32, "cls", IMAGENET_MEAN, 224,
               lambda model, px: model.layernorm(_last_layer(model, px))[:, 0]),
}  # fmt: skip
"""name -> (tiny config, D, output, mean, default input side, the documented feature computed by hand)."""


@pytest.mark.parametrize("name", list(CASES))
def test_encoder_wiring(name):
    make_config, dim, output, mean, side, reference = CASES[name]
    torch.manual_seed(0)
    encoder = load_encoder(name, weights="random", config=make_config())
    assert (encoder.feature_dim, encoder.output, encoder.image_size, encoder.mean) == (
        dim,
        output,
        side,
        mean,
    )
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (20, 20)).astype(np.uint8),
        rng.integers(0, 256, (30, 28, 3)).astype(np.uint8),
    ]
    features = encoder.encode(images)
    assert features.shape == (2, dim) and torch.isfinite(features).all()
    with torch.no_grad():
        torch.testing.assert_close(features, reference(encoder.model, encoder.preprocess(images)))


@pytest.mark.parametrize("name", ["clip", "vit", "siglip2"])
def test_other_input_sizes_interpolate_position_embeddings(name):
    make_config, dim, *_ = CASES[name]
    encoder = load_encoder(name, weights="random", config=make_config(), image_size=48)
    features = encoder.encode([np.zeros((50, 50), np.uint8)])
    assert encoder.image_size == 48 and features.shape == (1, dim) and torch.isfinite(features).all()


def test_a_full_clip_checkpoint_loads_with_its_projection(tmp_path):
    vision = {k: v for k, v in TINY.items()}
    text = dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=99
    )
    torch.manual_seed(0)
    clip = transformers.CLIPModel(
        transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=40)
    )
    clip.to(torch.bfloat16).save_pretrained(tmp_path)
    encoder = load_encoder("clip", source=str(tmp_path))
    assert encoder.feature_dim == 40 and next(encoder.model.parameters()).dtype == torch.float32
    images = [np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)]
    pixels = encoder.preprocess(images)
    with torch.no_grad():
        clip = clip.float()
        expected = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
    torch.testing.assert_close(encoder.encode(images), expected)


def test_pretrained_weights_are_only_read_from_local_files(tmp_path, monkeypatch):
    calls = []
    original = transformers.ViTConfig.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        calls.append(kwargs.get("local_files_only"))
        return original(cls, source, **kwargs)

    monkeypatch.setattr(transformers.ViTConfig, "from_pretrained", classmethod(spy))
    with pytest.raises(FileNotFoundError, match="harmono never downloads"):
        load_encoder("vit", source=str(tmp_path / "no-such-checkpoint"))
    assert calls == [True]
