"""Data from a known sparse dictionary, to check that an SAE recovers it."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SparseDictionaryData(NamedTuple):
    """Samples ``x = z @ atoms`` with a few active atoms each."""

    x: torch.Tensor
    """``(N, d_in)`` float32 samples."""
    codes: torch.Tensor
    """``(N, n_atoms)`` the true sparse codes."""
    atoms: torch.Tensor
    """``(n_atoms, d_in)`` unit-norm true dictionary."""


def sparse_dictionary_data(
    n: int, d_in: int, n_atoms: int, active: int, seed: int = 0, low: float = 0.5, high: float = 1.5
) -> SparseDictionaryData:
    """``n`` samples, each a sum of ``active`` distinct random atoms with magnitudes in ``[low, high]``.

    Parameters
    ----------
    n, d_in, n_atoms, active : int
        Samples, dimensions, atoms in the dictionary, atoms per sample.
    seed : int
        Seed of the dictionary and the codes.
    low, high : float
        Range of the uniform magnitudes.
    """
    if not 1 <= active <= n_atoms:
        raise ValueError(f"active must lie in [1, n_atoms = {n_atoms}], got {active}")
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d_in, generator=gen), dim=1)
    chosen = torch.rand(n, n_atoms, generator=gen).argsort(dim=1)[:, :active]
    magnitudes = low + (high - low) * torch.rand(n, active, generator=gen)
    codes = torch.zeros(n, n_atoms).scatter(1, chosen, magnitudes)
    return SparseDictionaryData(codes @ atoms, codes, atoms)


def dictionary_recovery(true_atoms: torch.Tensor, learned_atoms: torch.Tensor) -> float:
    """Mean over true atoms ``(n, d)`` of the largest cosine similarity to any learned atom ``(m, d)``."""
    true = torch.nn.functional.normalize(true_atoms.double(), dim=1)
    learned = torch.nn.functional.normalize(learned_atoms.double(), dim=1)
    return float((true @ learned.T).max(dim=1).values.mean())
