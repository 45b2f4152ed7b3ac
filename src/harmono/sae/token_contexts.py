"""A latent's activation on the tokens around its top-activating tokens, for the latent browser's text view.

For a token store (``tokens.safetensors`` beside its shards, see
:mod:`harmono.features.token_activations`) and each latent's first
``examples`` top rows, the latent's activation on the ``width`` tokens before
and after that token: ``(M, examples, 2 width + 1)``, NaN where a neighbour
is not in the store (skipped positions, another context) or the latent has
fewer top rows. Only the rows needed are encoded, once each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harmono.core.io import read_safetensors
from harmono.features.store import FeatureStore
from harmono.features.token_activations import TOKENS_FILE
from harmono.sae.base import SAE


def is_token_store(store: FeatureStore) -> bool:
    """Whether ``store`` was written by ``extract_token_activations`` (it has ``tokens.safetensors``)."""
    return (Path(store.directory) / TOKENS_FILE).is_file()


@torch.no_grad()
def neighbour_activations(
    sae: SAE,
    store: FeatureStore,
    top_rows: torch.Tensor,
    width: int = 4,
    examples: int = 3,
    l2_normalize: bool = True,
    batch_size: int = 4096,
) -> torch.Tensor:
    """``(M, examples, 2 width + 1)`` activations of each latent around its top tokens (see the module notes).

    Parameters
    ----------
    sae : SAE
        The SAE evaluated.
    store : FeatureStore
        A token store.
    top_rows : torch.Tensor
        ``(M, m)`` store rows of each latent's strongest activations, -1 padded (``TopActivations.rows``).
    width : int
        Neighbours on each side.
    examples : int
        Top rows per latent to take (the strongest first).
    l2_normalize : bool
        Normalise rows as the evaluation did.
    batch_size : int
        Rows encoded per batch.
    """
    table, _ = read_safetensors(Path(store.directory) / TOKENS_FILE)
    offsets, positions = table["offset"].numpy(), table["position"].numpy()
    row_of = {int(offset): row for row, offset in enumerate(offsets)}
    top = top_rows[:, :examples].numpy()
    shifts = np.arange(-width, width + 1)
    wanted = np.full(top.shape + (len(shifts),), -1, dtype=np.int64)
    for (latent, example), row in np.ndenumerate(top):
        if row < 0:
            continue
        start = int(offsets[row]) - int(positions[row])  # the first offset of the row's context
        for k, shift in enumerate(shifts):
            offset = int(offsets[row]) + int(shift)
            neighbour = row_of.get(offset, -1)
            if neighbour >= 0 and offset - int(positions[neighbour]) == start:  # in the same context
                wanted[latent, example, k] = neighbour
    needed = np.unique(wanted[wanted >= 0])
    result = torch.full(wanted.shape, float("nan"))
    index_of = {int(row): i for i, row in enumerate(needed)}
    latent_index = np.broadcast_to(np.arange(top.shape[0])[:, None, None], wanted.shape)
    for begin in range(0, len(needed), batch_size):
        rows = needed[begin : begin + batch_size]
        x = torch.from_numpy(store.take(rows, "float32"))
        if l2_normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        latents = sae.encode(x)
        chosen = np.isin(wanted, rows)
        local = torch.tensor([index_of[int(r)] - begin for r in wanted[chosen]], dtype=torch.int64)
        result[torch.from_numpy(chosen)] = latents[local, torch.from_numpy(latent_index[chosen].copy())]
    return result
