"""MonoScore and MonoLoss: the monosemanticity of neurons and SAE latents.

Pach et al., "Sparse Autoencoders Learn Monosemantic Features in
Vision-Language Models" (arXiv 2504.02821) define the score;
Nasiri-Sarvi et al., "MonoLoss" (arXiv 2602.12403) compute it in O(N) and
train with it.

Definition
----------
For latent ``k`` over ``N`` samples with activations ``a_nk`` and embeddings
``e_n``:

- min-max normalisation over the whole set,
  ``ã_nk = (a_nk - min_n a_nk) / (max_n a_nk - min_n a_nk)``;
- ``s_nm = cos(e_n, e_m)``;
- ``MS_k = sum_{n<m} ã_nk ã_mk s_nm / sum_{n<m} ã_nk ã_mk``, the
  activation-weighted average similarity of pairs of samples (the form
  confirmed by Pach et al., not the early ``1 / (N (N - 1))`` one).

``MS_k`` lies in ``[-1, 1]``. It is invariant to the max (a rescaling of the
latent) but not to the min (a shift). It is undefined ("dead") when the
latent is constant or fewer than two samples lie above its minimum.

With ``V_k = sum_n ã_nk ê_n`` (``ê = e / |e|``), ``u_k = sum_n ã_nk`` and
``v_k = sum_n ã_nk^2``, the pair sums are ``(|V_k|^2 - v_k) / 2`` and
``(u_k^2 - v_k) / 2``, so every score costs one ``(D, N) x (N, M)`` matmul.
``MonoScore`` keeps raw sums and the running min, and applies the min shift
algebraically at ``compute()``: one pass over the data, exact for any
batching and across processes.

Aggregation of dead latents differs between the two papers: Pach et al. give
them NaN and average the others (``dead="nan"``, the default); the MonoLoss
evaluation counts them as 0 (``dead="zero"``). ``summarize`` states both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from harmono.core import checks
from harmono.core.dtypes import compute_dtype
from harmono.mono.inputs import (
    Activations,
    as_activations,
    checked_batch,
    num_latents_of,
    require_same_device,
    unit_embeddings,
)
from harmono.mono.sums import DEAD_POLICIES, MonoSums, accumulate, scores_from_sums

PAIRWISE_BLOCK_BYTES = 256 * 2**20
"""Memory of one block of the pairwise reference: rows of the similarity matrix and their products."""


def mono_score(
    acts: Activations,
    emb: torch.Tensor,
    *,
    dead: str = "nan",
    num_latents: int | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """The MonoScore of every latent over a dataset (exact; O(N M D), or O(N k D) for sparse input).

    ``MS_k = sum_{n<m} ã_nk ã_mk s_nm / sum_{n<m} ã_nk ã_mk`` with
    ``ã_nk = (a_nk - min_n a_nk) / (max_n a_nk - min_n a_nk)`` (min-max over
    the whole set) and ``s_nm`` the cosine similarity of ``emb`` rows (see the
    module docstring). One streaming batch of ``MonoScore``.

    Parameters
    ----------
    acts : torch.Tensor or (values, indices)
        ``(N, M)`` activations of ``M`` latents, or TopK-style sparse
        activations ``values, indices`` of shape ``(N, k)`` (every latent not
        listed in a row is 0 there; needs ``num_latents``).
    emb : torch.Tensor
        ``(N, D)`` embeddings of the same samples (need not be unit-norm).
    dead : {"nan", "zero"}
        Score of a latent with no defined score (constant, or fewer than two
        samples above its min): NaN (Pach et al.) or 0 (MonoLoss evaluation).
    num_latents : int, optional
        ``M``; required for sparse input.
    validate : bool
        Read the data to reject NaN/inf, zero embeddings and bad indices.

    Returns
    -------
    torch.Tensor
        ``(M,)`` float64 scores in ``[-1, 1]``.

    Notes
    -----
    The matmul runs in float32 (float64 for float64 input) and the sums in
    float64.
    """
    checks.require_choice("dead", dead, DEAD_POLICIES)
    checked, emb = checked_batch(acts, emb, num_latents, None, validate)
    sums = MonoSums.empty(num_latents_of(checked, num_latents), emb.shape[1], device=emb.device)
    accumulate(sums, checked, emb, validate)
    return scores_from_sums(sums, dead)


def mono_score_pairwise(
    acts: torch.Tensor,
    emb: torch.Tensor,
    *,
    dead: str = "nan",
    block_bytes: int = PAIRWISE_BLOCK_BYTES,
) -> torch.Tensor:
    """The MonoScore by its O(N^2) definition: a reference for tests and benchmarks.

    Builds the similarity matrix ``s_nm`` block by block of rows (``block_bytes``
    each, so ``N = 16384`` fits in memory), zeroes its diagonal and sums
    ``ã_nk ã_mk s_nm`` and ``ã_nk ã_mk`` over all pairs ``n != m``. Costs
    ``O(N^2 (D + M))``. Computes in float32, or float64 if ``acts`` or ``emb`` is float64.

    Parameters
    ----------
    acts : torch.Tensor
        ``(N, M)`` dense activations.
    emb : torch.Tensor
        ``(N, D)`` embeddings.
    dead : {"nan", "zero"}
        Score of a latent whose pair weight is 0.
    block_bytes : int
        Memory of one block of ``(rows, N)`` similarities plus ``(rows, M)`` products.

    Returns
    -------
    torch.Tensor
        ``(M,)`` scores in the compute dtype.
    """
    checks.require_choice("dead", dead, DEAD_POLICIES)
    acts = as_activations(checks.require_tensor("acts", acts), None, validate=True)
    checks.require_finite("acts", acts)
    dtype = compute_dtype(acts, checks.require_tensor("emb", emb))
    emb_hat = unit_embeddings(emb, acts.shape[0], None, True, dtype)
    require_same_device(acts, emb_hat, "emb")
    acts = acts.to(dtype)
    n, m = acts.shape
    low, high = acts.amin(dim=0), acts.amax(dim=0)
    spread = high - low
    normed = (acts - low) / torch.where(spread > 0, spread, torch.ones_like(spread))
    total = normed.sum(dim=0)
    rows = max(1, int(block_bytes // ((n + 2 * m) * acts.element_size())))
    numerator = torch.zeros(m, dtype=dtype, device=acts.device)
    pair_weight = torch.zeros(m, dtype=dtype, device=acts.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = normed[start:stop]
        sim = emb_hat[start:stop] @ emb_hat.T
        sim[torch.arange(stop - start, device=sim.device), torch.arange(start, stop, device=sim.device)] = 0.0
        numerator += (block * (sim @ normed)).sum(dim=0)
        pair_weight += (block * (total - block)).sum(dim=0)
    alive = pair_weight > 0
    score = numerator / torch.where(alive, pair_weight, torch.ones_like(pair_weight))
    return torch.where(alive, score, torch.full_like(score, torch.nan if dead == "nan" else 0.0))


@dataclass(frozen=True)
class MonoSummary:
    """Aggregate MonoScore of a set of latents, under both dead-latent conventions.

    Attributes
    ----------
    num_latents : int
        Number of latents scored.
    num_dead : int
        Latents with no defined score.
    mean, median, p90 : float
        Over latents with a score (Pach et al.: dead latents excluded); NaN if all are dead.
    mean_dead_as_zero, median_dead_as_zero, p90_dead_as_zero : float
        With dead latents counted as 0 (the MonoLoss evaluation).
    """

    num_latents: int
    num_dead: int
    mean: float
    median: float
    p90: float
    mean_dead_as_zero: float
    median_dead_as_zero: float
    p90_dead_as_zero: float

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def _mean_median_p90(values: torch.Tensor) -> tuple[float, float, float]:
    if values.numel() == 0:
        return math.nan, math.nan, math.nan
    values = values.to(torch.float64)
    quantiles = torch.quantile(values, torch.tensor([0.5, 0.9], dtype=torch.float64, device=values.device))
    return float(values.mean()), float(quantiles[0]), float(quantiles[1])


def summarize(scores: torch.Tensor) -> MonoSummary:
    """Mean, median, p90 and dead count of per-latent scores, under both conventions.

    Parameters
    ----------
    scores : torch.Tensor
        ``(M,)`` scores with NaN for dead latents (``dead="nan"``, the default
        of ``mono_score`` and ``MonoScore``). Scores computed with
        ``dead="zero"`` cannot be told apart from real zeros.

    Returns
    -------
    MonoSummary
    """
    scores = checks.require_tensor("scores", scores)
    checks.require_ndim("scores", scores, 1, "(M,)")
    checks.require_floating("scores", scores)
    checks.require_non_empty("scores", scores, "(M,) with M >= 1")
    if torch.isinf(scores).any():
        raise ValueError("scores must be finite or NaN (NaN marks a dead latent), got an infinity")
    dead = torch.isnan(scores)
    alive = _mean_median_p90(scores[~dead])
    as_zero = _mean_median_p90(torch.where(dead, torch.zeros_like(scores), scores))
    return MonoSummary(scores.numel(), int(dead.sum()), *alive, *as_zero)
