"""``MonoScore``: the streaming, mergeable MonoScore as a torchmetrics ``Metric``."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from harmono.core import checks
from harmono.mono.inputs import (
    Activations,
    SparseActivations,
    checked_batch,
    num_rows,
    read_batch_values,
    require_same_device,
    values_of,
)
from harmono.mono.sums import (
    DEAD_POLICIES,
    FLUSH_ROWS,
    MonoSums,
    accumulate,
    merge_reference,
    rebase,
    scores_from_sums,
)


class MonoScore(Metric):
    """Streaming, mergeable MonoScore of ``num_latents`` latents (a torchmetrics ``Metric``).

    ``update(acts, emb)`` per batch, ``compute()`` -> ``(M,)`` float64
    scores, equal to ``mono_score`` on the concatenated data (see
    ``harmono.mono`` for the definition). One pass: the states are
    ``S = sum_n c_n ê_n^T (M, D)``, ``E = sum_n ê_n (D,)``, ``sum_n c_n``,
    ``sum_n c_n^2`` for the activations ``c = a - r`` relative to a reference
    ``r`` (the first batch's minimum), ``r``, the per-latent min and max
    ``(M,)`` and the count, all float64 (see ``harmono.mono.sums``). States
    are moved to one reference before they merge (``merge_state``,
    ``forward`` and the ``torch.distributed`` sync), then merge by sum, min
    and max, so any batching and any number of processes give the same
    result, and a common offset of the activations costs no digits. Batch matmuls
    accumulate in place into a float32 copy of ``S`` that moves into the
    float64 one every 65536 rows. The two take ``12 D M`` bytes (75 MB for
    ``D = 768``, ``M = 8192``); torchmetrics keeps one more copy of the
    initial states for ``reset``, and ``forward`` one of the current states.

    Parameters
    ----------
    num_latents : int
        ``M``.
    emb_dim : int
        ``D``.
    dead : {"nan", "zero"}
        Score of latents with no defined score (see ``mono_score``).
    validate : bool
        Read each batch to reject NaN/inf, zero embeddings and bad indices.
    **kwargs
        Passed to ``torchmetrics.Metric`` (``sync_on_compute``, ``process_group``...).

    Examples
    --------
    >>> metric = MonoScore(num_latents=512, emb_dim=64)
    >>> for _ in range(3):
    ...     metric.update(torch.relu(torch.randn(100, 512)), torch.randn(100, 64))
    >>> metric.compute().shape
    torch.Size([512])
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_latents: int, emb_dim: int, dead: str = "nan", validate: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_latents = checks.require_positive_int("num_latents", num_latents)
        self.emb_dim = checks.require_positive_int("emb_dim", emb_dim)
        self.dead = checks.require_choice("dead", dead, DEAD_POLICIES)
        self.validate = validate
        empty = MonoSums.empty(num_latents, emb_dim)
        for name in MonoSums.names():
            self.add_state(name, default=getattr(empty, name), dist_reduce_fx=MonoSums.reduction(name))
        self._rows_since_flush = 0

    def _sums(self) -> MonoSums:
        return MonoSums(**{name: getattr(self, name) for name in MonoSums.names()})

    def _set_sums(self, sums: MonoSums) -> None:
        for name in MonoSums.names():
            setattr(self, name, getattr(sums, name))

    def update(self, acts: Activations, emb: torch.Tensor) -> None:
        """Add a batch.

        Parameters
        ----------
        acts : torch.Tensor or (values, indices)
            ``(B, M)`` activations, or TopK-style ``values, indices`` of shape
            ``(B, k)`` (cost ``O(B k D)`` instead of ``O(B M D)``).
        emb : torch.Tensor
            ``(B, D)`` embeddings of the same samples.
        """
        checked, emb = self._checked(acts, emb)
        accumulate(self._sums(), checked, emb, self.validate)
        self._count_rows(num_rows(checked))

    def _checked(
        self, acts: Activations, emb: torch.Tensor
    ) -> tuple[torch.Tensor | SparseActivations, torch.Tensor]:
        checked, emb = checked_batch(acts, emb, self.num_latents, self.emb_dim, self.validate)
        require_same_device(values_of(checked), self.act_emb, "the metric states")
        return checked, emb

    def _count_rows(self, rows: int) -> None:
        """Move the float32 partial sums into float64 once ``FLUSH_ROWS`` rows went into them."""
        self._rows_since_flush += rows
        if self._rows_since_flush >= FLUSH_ROWS:
            self._sums().flush()
            self._rows_since_flush = 0

    def forward(self, acts: Activations, emb: torch.Tensor) -> torch.Tensor:
        """Add a batch and return the scores of that batch alone.

        The batch is checked completely first: torchmetrics sets the states
        aside while it scores the batch alone, so a batch rejected halfway
        would lose them.
        """
        checked, checked_emb = self._checked(acts, emb)
        if self.validate:
            read_batch_values(checked, checked_emb)
        rows_before = self._rows_since_flush  # torchmetrics resets around the batch
        validate, self.validate = self.validate, False
        try:
            batch_scores = super().forward(acts, emb)
        finally:
            self.validate = validate
        self._count_rows(rows_before)
        return batch_scores

    def merge_state(self, incoming_state: dict | Metric) -> None:
        """Merge the states of another ``MonoScore`` (or a dict of them) into this one."""
        super().merge_state(incoming_state)
        self._sums().flush()
        self._rows_since_flush = 0

    def _reduce_states(self, incoming_state: dict) -> None:
        """Move this state to the incoming one's reference (or it to ours if it is empty), then merge."""
        incoming = MonoSums(**{name: incoming_state[name] for name in MonoSums.names()})
        reference = merge_reference(self._sums(), incoming)
        self._set_sums(rebase(self._sums(), reference))
        super()._reduce_states({**incoming_state, **vars(rebase(incoming, reference))})

    def _sync_dist(self, dist_sync_fn=gather_all_tensors, process_group=None) -> None:
        """Move every process's state to the reference of the first that saw a sample, then merge."""
        header = torch.cat([self.count.reshape(1), self.act_ref])
        gathered = dist_sync_fn(header, group=process_group or self.process_group)
        reference = gathered[0][1:]
        for other in reversed(gathered):
            reference = torch.where(other[0] > 0, other[1:], reference)
        self._set_sums(rebase(self._sums(), reference))
        super()._sync_dist(dist_sync_fn, process_group)

    def reset(self) -> None:
        """Forget every batch seen."""
        super().reset()
        self._rows_since_flush = 0

    def compute(self) -> torch.Tensor:
        """``(M,)`` float64 scores of everything seen (NaN or 0 for dead latents)."""
        return scores_from_sums(self._sums(), self.dead)
