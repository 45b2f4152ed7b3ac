"""Wiring of the paper's encoders with tiny random configs (no weights, no download)."""

import numpy as np
import pytest
import torch

from harmono.features.encoders import load_encoder
from harmono.features.hf_encoders import CLIP_MEAN, HALF, IMAGENET_MEAN

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
CASES = {
    "clip": (lambda: transformers.CLIPVisionConfig(projection_dim=24, **TINY), 24, "projected", CLIP_MEAN,
             lambda model, px: model(pixel_values=px).image_embeds),
    "siglip2": (lambda: transformers.SiglipVisionConfig(**TINY), 32, "pooled", HALF,
                lambda model, px: model(pixel_values=px).pooler_output),
    "vit": (lambda: transformers.ViTConfig(**TINY), 32, "cls", HALF,
            lambda model, px: model(pixel_values=px).last_hidden_state[:, 0]),
    "dinov2": (lambda: transformers.Dinov2Config(**TINY), 32, "cls", IMAGENET_MEAN,
               lambda model, px: model(pixel_values=px).pooler_output),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_encoder_wiring(name):
    make_config, dim, output, mean, reference = CASES[name]
    torch.manual_seed(0)
    encoder = load_encoder(name, weights="random", config=make_config())
    assert (encoder.feature_dim, encoder.output, encoder.image_size, encoder.mean) == (dim, output, 32, mean)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (20, 20)).astype(np.uint8),
        rng.integers(0, 256, (30, 28, 3)).astype(np.uint8),
    ]
    features = encoder.encode(images)
    assert features.shape == (2, dim) and torch.isfinite(features).all()
    with torch.no_grad():
        torch.testing.assert_close(features, reference(encoder.model, encoder.preprocess(images)))


def test_pretrained_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="harmono never downloads"):
        load_encoder("vit")
