"""The samples on which each latent fires most strongly, found in one streaming pass.

Interpretability reports show, for every latent, the inputs that activate it
most: ``TopActivations`` keeps the ``per_latent`` largest positive
activations of every latent over a stream of batches, with the dataset row
of each, in ``O(M (per_latent + B))`` memory per batch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harmono.core.io import read_safetensors, write_atomically

VALUES = "values"
ROWS = "rows"
NEIGHBOURS = "neighbours"


class TopActivations:
    """Running top-``per_latent`` activations of ``num_latents`` latents.

    Parameters
    ----------
    num_latents : int
        Number of latents ``M``.
    per_latent : int
        How many samples to keep per latent.

    Notes
    -----
    Only positive activations count: a latent that fires on fewer than
    ``per_latent`` samples keeps ``-inf`` values and row ``-1`` in its
    remaining slots. Ties are broken by the order of arrival.
    """

    def __init__(self, num_latents: int, per_latent: int = 9) -> None:
        if num_latents < 1 or per_latent < 1:
            raise ValueError(
                f"expected num_latents >= 1 and per_latent >= 1, got {num_latents}, {per_latent}"
            )
        self.values = torch.full((num_latents, per_latent), float("-inf"))
        self.rows = torch.full((num_latents, per_latent), -1, dtype=torch.int64)

    def update(self, latents: torch.Tensor, rows: torch.Tensor) -> None:
        """Merge one batch.

        Parameters
        ----------
        latents : torch.Tensor, shape (B, M)
            Activations of the batch.
        rows : torch.Tensor, shape (B,)
            Dataset row of each sample (int64).
        """
        num_latents, per_latent = self.values.shape
        if latents.ndim != 2 or latents.shape[1] != num_latents:
            raise ValueError(f"expected latents of shape (B, {num_latents}), got {tuple(latents.shape)}")
        if rows.shape != (latents.shape[0],):
            raise ValueError(
                f"expected one row index per sample, shape ({latents.shape[0]},), got {tuple(rows.shape)}"
            )
        batch = latents.detach().float().T.cpu()
        batch = batch.masked_fill(~(batch > 0), float("-inf"))
        values = torch.cat([self.values, batch], dim=1)
        candidates = torch.cat([self.rows, rows.cpu().long().expand(num_latents, -1)], dim=1)
        self.values, order = values.topk(per_latent, dim=1, sorted=True)
        self.rows = candidates.gather(1, order).masked_fill(self.values == float("-inf"), -1)

    def save(self, path: str | Path, neighbours: torch.Tensor | None = None) -> Path:
        """Write ``values`` and ``rows`` ``(M, per_latent)`` as safetensors (atomically).

        ``neighbours`` (token stores: ``harmono.sae.token_contexts.neighbour_activations``) is saved
        with them.
        """
        from safetensors.torch import save

        tensors = {VALUES: self.values.contiguous(), ROWS: self.rows.contiguous()}
        if neighbours is not None:
            tensors[NEIGHBOURS] = neighbours.float().contiguous()
        blob = save(tensors)
        return write_atomically(Path(path), lambda handle: handle.write(blob))


def load_neighbours(path: str | Path) -> torch.Tensor | None:
    """``(M, examples, 2 width + 1)`` activations around the top tokens, or None (not a token store)."""
    tensors, _ = read_safetensors(path)
    return tensors.get(NEIGHBOURS)


def load_top_activations(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, rows)``, each ``(M, per_latent)``, as written by :meth:`TopActivations.save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected top activations in {path}: run `harmono sae eval` first")
    tensors, _ = read_safetensors(path)
    return tensors[VALUES], tensors[ROWS]
