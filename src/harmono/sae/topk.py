"""TopK and BatchTopK SAEs, their sparse decoding and the AuxK loss on dead latents.

TopK keeps the ``k`` largest pre-activations of each sample (then ReLU).
BatchTopK keeps the ``k * B`` largest of the whole batch at training time, so
the count per sample varies around ``k``; at inference it applies a threshold
instead, the running average of the smallest activation each training batch
kept (a float32 buffer, saved with the weights, averaged over ranks under
``torch.distributed``).

Both decode from indices and values with ``embedding_bag`` (``O(B k d_in)``
instead of the dense ``O(B d_sae d_in)``, see ``harmono.sae.base``), whose
backward pass is index-based too. AuxK (Gao et al. 2024): the ``k_aux`` largest pre-activations among the
latents the trainer counts as dead reconstruct the detached residual; the
loss is normalised by the residual's variance and weighted by ``aux_coef``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from harmono.mono.inputs import SparseEntries
from harmono.sae.base import SAE, decode_sparse, row_starts
from harmono.sae.config import SAEConfig


def scatter_dense(shape: tuple[int, int], rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor):
    """``(B, d_sae)`` dense latents with ``values`` at ``(rows, columns)`` (differentiable in ``values``)."""
    dense = values.new_zeros(shape)
    return dense.index_put((rows, columns), values)


class _AuxKMixin(SAE):
    """The AuxK loss shared by TopK and BatchTopK."""

    def extra_losses(self, x_in, pre, latents, recon_in, dead_mask):
        """``{"aux": aux_coef * AuxK loss}`` when the trainer passes a ``dead_mask`` (else nothing)."""
        if dead_mask is None or self.config.aux_coef == 0:
            return {}
        dead = int(dead_mask.sum())
        if dead == 0:
            return {"aux": pre.new_zeros((), dtype=torch.float32)}
        k_aux = min(self.config.aux_k, dead)
        masked = pre.masked_fill(~dead_mask, float("-inf"))
        values, indices = masked.topk(k_aux, dim=1)
        rows = torch.arange(len(pre), device=pre.device)
        offsets = rows * k_aux
        no_bias = torch.zeros_like(self.b_dec)
        aux = decode_sparse(self.W_dec, no_bias, indices.reshape(-1), values.relu().reshape(-1), offsets)
        residual = (x_in - recon_in).detach().float()
        variance = (residual - residual.mean(dim=0)).square().sum(dim=1).mean().clamp_min(1e-12)
        loss = (aux.float() - residual).square().sum(dim=1).mean() / variance
        return {"aux": self.config.aux_coef * loss}


class TopKSAE(_AuxKMixin):
    """Per-sample top-``k`` of the pre-activations, then ReLU."""

    architecture = "topk"

    def _select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = pre.topk(self.config.k, dim=1)
        return values.relu(), indices

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Dense latents: the row's top ``k`` pre-activations (ReLU), zero elsewhere."""
        values, indices = self._select(pre)
        return torch.zeros_like(pre).scatter(1, indices, values)

    def activate_and_decode(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SparseEntries]:
        """Latents, their reconstruction decoded from indices and values, and that code."""
        values, indices = self._select(pre)
        latents = torch.zeros_like(pre).scatter(1, indices, values)
        rows = torch.arange(len(pre), device=pre.device)
        code = SparseEntries(
            values.reshape(-1), rows.repeat_interleave(self.config.k), indices.reshape(-1), len(pre)
        )
        recon = decode_sparse(self.W_dec, self.b_dec, code.columns, code.values, rows * self.config.k)
        return latents, recon, code


class BatchTopKSAE(_AuxKMixin):
    """Top ``k * B`` pre-activations of the batch when training; a learned threshold at inference."""

    architecture = "batchtopk"

    def __init__(self, config: SAEConfig):
        super().__init__(config)
        self.register_buffer("threshold", torch.tensor(-1.0, dtype=torch.float32))  # < 0: not estimated yet

    def _select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows, columns and values of the batch's top ``k * B`` positive pre-activations, row-major."""
        flat = pre.reshape(-1)
        values, positions = flat.topk(min(self.config.k * len(pre), flat.numel()))
        keep = values > 0
        positions, order = positions[keep].sort()
        values = values[keep][order]
        return positions // pre.shape[1], positions % pre.shape[1], values

    @torch.no_grad()
    def _update_threshold(self, values: torch.Tensor) -> None:
        smallest = values.min().float() if values.numel() else self.threshold.new_zeros(())
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(smallest)
            smallest /= dist.get_world_size()
        m = self.config.threshold_momentum
        self.threshold.copy_(smallest if self.threshold < 0 else (1 - m) * self.threshold + m * smallest)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Batch top-``k B`` when training (or with no threshold yet), else ``pre * (pre > threshold)``."""
        if self.training or self.threshold < 0:
            rows, columns, values = self._select(pre)
            return scatter_dense(tuple(pre.shape), rows, columns, values)
        return torch.where(pre > self.threshold, pre, 0.0)

    def activate_and_decode(
        self, pre: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, SparseEntries | None]:
        """Training: batch top-``k B``, threshold update, sparse decoding, the code; else the dense path."""
        if not self.training:
            return super().activate_and_decode(pre)
        rows, columns, values = self._select(pre)
        self._update_threshold(values.detach())
        latents = scatter_dense(tuple(pre.shape), rows, columns, values)
        recon = decode_sparse(self.W_dec, self.b_dec, columns, values, row_starts(rows, len(pre)))
        return latents, recon, SparseEntries(values, rows, columns, len(pre))
