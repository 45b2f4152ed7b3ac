"""Streaming top activations equal a full sort of the whole activation matrix."""

import numpy as np
import pytest
import torch

from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.sae import SAEConfig, create_sae
from harmono.sae.evaluate import evaluate_sae
from harmono.sae.top_activations import TopActivations, load_top_activations


def naive_top(acts: np.ndarray, per_latent: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent: rows of the positive activations, largest first, padded with -1 / -inf."""
    values = np.full((acts.shape[1], per_latent), -np.inf)
    rows = np.full((acts.shape[1], per_latent), -1)
    for latent in range(acts.shape[1]):
        positive = np.flatnonzero(acts[:, latent] > 0)
        order = positive[np.argsort(-acts[positive, latent], kind="stable")][:per_latent]
        values[latent, : len(order)] = acts[order, latent]
        rows[latent, : len(order)] = order
    return values, rows


@pytest.mark.parametrize("batch", [1, 7, 64, 500])
def test_streaming_equals_a_sort_of_the_whole_set(batch):
    generator = torch.Generator().manual_seed(0)
    acts = torch.relu(torch.randn(500, 40, generator=generator) - 1.5)  # sparse: some latents fire < 5 times
    acts[:, 3] = 0  # a dead latent
    top = TopActivations(40, per_latent=5)
    for start in range(0, 500, batch):
        top.update(acts[start : start + batch], torch.arange(start, min(start + batch, 500)))
    values, rows = naive_top(acts.double().numpy(), 5)
    assert (acts > 0).sum(0).min() < 5, "the test needs latents that fire fewer times than kept"
    np.testing.assert_array_equal(top.rows.numpy(), rows)
    np.testing.assert_allclose(top.values.numpy(), values, rtol=1e-6)
    assert (top.rows[3] == -1).all()


def test_save_load_round_trip(tmp_path):
    top = TopActivations(6, per_latent=3)
    top.update(torch.rand(20, 6), torch.arange(100, 120))
    values, rows = load_top_activations(top.save(tmp_path / "top.safetensors"))
    assert torch.equal(values, top.values) and torch.equal(rows, top.rows)
    assert rows.min() >= 100


def test_bad_shapes_are_refused_and_a_missing_file_named(tmp_path):
    top = TopActivations(6)
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, 6\), got \(4, 5\)"):
        top.update(torch.rand(4, 5), torch.arange(4))
    with pytest.raises(ValueError, match=r"one row index per sample, shape \(4,\), got \(3,\)"):
        top.update(torch.rand(4, 6), torch.arange(3))
    with pytest.raises(ValueError, match="per_latent >= 1"):
        TopActivations(6, per_latent=0)
    with pytest.raises(FileNotFoundError, match="harmono sae eval"):
        load_top_activations(tmp_path / "missing.safetensors")


def test_evaluation_writes_the_top_activations_of_the_sae_latents(tmp_path):
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    with FeatureStoreWriter(tmp_path / "store", 16, {"dataset": "synthetic", "class_names": ["a", "b"]},
                            dtype="float32", shard_rows=128) as writer:  # fmt: skip
        writer.append(x, [str(i) for i in range(300)], [i % 2 for i in range(300)])
    store = FeatureStore(tmp_path / "store")
    torch.manual_seed(0)
    sae = create_sae(SAEConfig("topk", d_in=16, d_sae=24, k=4))
    evaluate_sae(sae, store, batch_size=50, l2_normalize=False, table=tmp_path / "eval.json",
                 top_activations=tmp_path / "top.safetensors", per_latent=4, progress=False)  # fmt: skip
    values, rows = load_top_activations(tmp_path / "top.safetensors")
    with torch.no_grad():
        expected_values, expected_rows = naive_top(sae.encode(x).double().numpy(), 4)
    np.testing.assert_array_equal(rows.numpy(), expected_rows)
    np.testing.assert_allclose(values.numpy(), expected_values, rtol=1e-5)
