"""Float64 references for the SAE formats of other libraries, written from each library's documented forward.

Shares no code with ``harmono.sae.foreign``: each function is the library's formula, step by step.
"""

import torch

D_IN, D_SAE, K = 16, 48, 5
TOLERANCE = 1e-5
"""Largest absolute difference allowed between harmono's float32 forward and the float64 reference."""


def weights(*shape, seed, scale=1.0):
    """Random float64 tensor of ``shape``."""
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def inputs(n=32, seed=99, d_in=D_IN):
    """``(n, d_in)`` float64 inputs with a mean and scale unlike the unit normal (for the norms to matter)."""
    return 3.0 * weights(n, d_in, seed=seed) + 0.5


def assert_matches(sae, x, latents, reconstruction):
    """``sae`` on ``x`` (as float32) gives the float64 reference latents and reconstruction."""
    got_latents, got_recon = sae.reconstruct(x.float())
    assert got_latents.dtype == torch.float32
    assert (got_latents.double() - latents).abs().max() < TOLERANCE
    assert (got_recon.double() - reconstruction).abs().max() < TOLERANCE
    assert torch.equal(sae.encode(x.float()), got_latents)
    assert (latents != 0).sum(dim=1).float().mean() > 0  # the case is not trivially all zeros


def topk_dense(values, k):
    """Dense ``(B, M)``: the ``k`` largest entries of each row of ``values`` kept, the others zero."""
    kept = torch.zeros_like(values)
    for row in range(len(values)):
        for j in sorted(range(values.shape[1]), key=lambda j: -float(values[row, j]))[:k]:
            kept[row, j] = values[row, j]
    return kept


def layer_norm(x, eps=1e-5):
    """``(x', mean, std)``: SAELens's and OpenAI's input norm, ``(x - mean) / (std + eps)``, unbiased std."""
    mean = x.mean(dim=1, keepdim=True)
    std = ((x - mean).square().sum(dim=1, keepdim=True) / (x.shape[1] - 1)).sqrt()
    return (x - mean) / (std + eps), mean, std
