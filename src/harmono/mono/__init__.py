"""MonoScore and MonoLoss: the monosemanticity of neurons and SAE latents, and class purity.

- ``score``: :func:`mono_score` (one exact O(N) pass), :func:`mono_score_pairwise` (the O(N^2) definition),
  :func:`summarize`.
- ``metric``: :class:`MonoScore`, the streaming, mergeable torchmetrics ``Metric``.
- ``loss``: :func:`batch_mono_scores` and :func:`mono_loss`, the differentiable training objective.
- ``inputs``, ``sums``, ``sparse_loss``: checked inputs, the mergeable sums, the sparse batch loss.
- ``purity``: :func:`class_purity`, the label-based counterpart.
"""

from harmono.mono.inputs import SparseActivations, SparseEntries
from harmono.mono.loss import BatchMonoScores, batch_mono_scores, mono_loss
from harmono.mono.metric import MonoScore
from harmono.mono.purity import ClassPurity, PurityResult, class_purity
from harmono.mono.score import MonoSummary, mono_score, mono_score_pairwise, summarize

__all__ = [
    "BatchMonoScores",
    "ClassPurity",
    "MonoScore",
    "MonoSummary",
    "PurityResult",
    "SparseActivations",
    "SparseEntries",
    "batch_mono_scores",
    "class_purity",
    "mono_loss",
    "mono_score",
    "mono_score_pairwise",
    "summarize",
]
