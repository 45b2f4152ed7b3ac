"""MonoScore against token identity: how much a latent fires on one token, exactly, without an (N, V) matrix.

With one-hot embeddings of the tokens, ``s_nm`` is 1 when samples ``n`` and
``m`` are the same token and 0 otherwise, so (``harmono.mono.score``'s
definition, min-max normalised activations ``ã``)::

    MS_k = sum_t (A_tk^2 - Q_tk) / ((sum_t A_tk)^2 - sum_t Q_tk)
    A_tk = sum_{n: token t} ã_nk        Q_tk = sum_{n: token t} ã_nk^2

The min-max scale cancels. The min ``m_k`` shift is applied algebraically
from raw sums, as ``MonoScore`` does: with ``S_tk`` the raw activation sum of
token ``t`` and ``c_t`` its count, ``sum_t A_tk^2`` needs only
``sum_t S_tk^2``, ``sum_t S_tk c_t`` and ``sum_t c_t^2``, and the ``S_tk`` are
kept for the (token, latent) pairs that fired, so memory grows with the
nonzero activations, not with the vocabulary times the latents. One pass,
float64 sums, exact for any batching.
"""

from __future__ import annotations

import torch

from harmono.core import checks

COALESCE_ENTRIES = 1 << 22
"""Pending (token, latent) entries summed into the running table once there are this many."""


class TokenIdentityMonoScore:
    """Streaming MonoScore of ``num_latents`` latents with one-hot token embeddings.

    Parameters
    ----------
    num_latents : int
        ``M``.
    """

    def __init__(self, num_latents: int) -> None:
        self.num_latents = checks.require_positive_int("num_latents", num_latents)
        self.rows = 0
        self.minimum = torch.full((num_latents,), float("inf"), dtype=torch.float64)
        self.maximum = torch.full((num_latents,), float("-inf"), dtype=torch.float64)
        self.total = torch.zeros(num_latents, dtype=torch.float64)
        self.squares = torch.zeros(num_latents, dtype=torch.float64)
        self.counts = torch.zeros(0, dtype=torch.float64)
        self._keys = torch.zeros(0, dtype=torch.int64)
        self._values = torch.zeros(0, dtype=torch.float64)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending_entries = 0

    def update(self, latents: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add a batch: ``latents (B, M)`` dense activations and their ``tokens (B,)`` (int)."""
        if latents.ndim != 2 or latents.shape[1] != self.num_latents:
            raise ValueError(f"expected latents of shape (B, {self.num_latents}), got {tuple(latents.shape)}")
        if tokens.shape != (latents.shape[0],) or tokens.is_floating_point() or bool((tokens < 0).any()):
            got = f"{tuple(tokens.shape)} {tokens.dtype}"
            raise ValueError(f"expected ({latents.shape[0]},) non-negative integer tokens, got {got}")
        acts = latents.detach().double().cpu()
        tokens = tokens.detach().long().cpu()
        checks.require_finite("latents", acts)
        self.rows += len(acts)
        self.minimum = torch.minimum(self.minimum, acts.min(dim=0).values)
        self.maximum = torch.maximum(self.maximum, acts.max(dim=0).values)
        self.total += acts.sum(dim=0)
        self.squares += acts.square().sum(dim=0)
        size = int(tokens.max()) + 1 if len(tokens) else 0
        if size > len(self.counts):
            self.counts = torch.cat([self.counts, self.counts.new_zeros(size - len(self.counts))])
        self.counts.index_add_(0, tokens, torch.ones(len(tokens), dtype=torch.float64))
        rows, columns = acts.nonzero(as_tuple=True)
        self._pending.append((tokens[rows] * self.num_latents + columns, acts[rows, columns]))
        self._pending_entries += len(rows)
        if self._pending_entries >= COALESCE_ENTRIES:
            self._coalesce()

    def _coalesce(self) -> None:
        keys = torch.cat([self._keys, *(k for k, _ in self._pending)])
        values = torch.cat([self._values, *(v for _, v in self._pending)])
        self._keys, inverse = torch.unique(keys, return_inverse=True)
        self._values = torch.zeros(len(self._keys), dtype=torch.float64).index_add_(0, inverse, values)
        self._pending, self._pending_entries = [], 0

    def compute(self) -> torch.Tensor:
        """``(M,)`` float64 scores; NaN for a latent that is constant or above its minimum on < 2 samples."""
        self._coalesce()
        latent = self._keys % self.num_latents
        token_sums = self._values
        counts = self.counts[self._keys // self.num_latents]
        m = self.minimum
        s_squared = torch.zeros(self.num_latents, dtype=torch.float64).index_add_(
            0, latent, token_sums.square()
        )
        s_counts = torch.zeros(self.num_latents, dtype=torch.float64).index_add_(
            0, latent, token_sums * counts
        )
        counts_squared = float(self.counts.square().sum())
        same_token = s_squared - 2 * m * s_counts + m.square() * counts_squared  # sum_t A_tk^2, unscaled
        diagonal = self.squares - 2 * m * self.total + m.square() * self.rows  # sum_n (a_nk - m_k)^2
        mass = self.total - m * self.rows  # sum_n (a_nk - m_k)
        numerator, denominator = same_token - diagonal, mass.square() - diagonal
        spread = (self.maximum - m).square()
        dead = (self.maximum <= m) | (denominator <= 1e-12 * spread * max(self.rows, 1))
        return torch.where(dead, torch.nan, numerator / denominator.where(~dead, 1.0))
