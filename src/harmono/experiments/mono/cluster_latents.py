"""What the MonoScore measures, on latents whose meaning is known.

Embeddings form ``clusters`` tight clusters ("concepts") in ``dim``
dimensions. Three kinds of synthetic latents fire on them with random
positive strengths:

- ``one concept``: on the members of one cluster only (monosemantic);
- ``two concepts``: on the members of two clusters (polysemantic);
- ``random``: on a random ``fire_rate`` share of all samples.

The score of a one-concept latent is the similarity within a cluster, that
of a random latent the mean similarity of the whole set, and a two-concept
latent lies between. Class purity (clusters as classes) tells the same story.
The single-pass score is checked against the O(N^2) definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harmono.core import checks
from harmono.experiments.claims import Claim
from harmono.mono import MonoScore, mono_score_pairwise
from harmono.mono.purity import class_purity

KINDS = ("one concept", "two concepts", "random")


@dataclass(frozen=True)
class MonoToyConfig:
    """Settings of the synthetic MonoScore check."""

    clusters: int = 10
    """Number of embedding clusters (concepts, also the classes for purity)."""
    per_cluster: int = 400
    """Samples per cluster."""
    dim: int = 64
    """Embedding dimension."""
    spread: float = 0.5
    """Within-cluster noise, relative to the unit-norm cluster centers."""
    latents_per_kind: int = 10
    """Latents of each kind."""
    fire_rate: float = 0.1
    """Share of samples a random latent fires on."""
    batch: int = 512
    """Rows per streaming ``MonoScore.update``."""
    seed: int = 0
    """Seed of the data."""

    def __post_init__(self) -> None:
        checks.require_at_least(self, ("clusters", "per_cluster", "dim", "latents_per_kind", "batch"), 1)
        if self.clusters < 2:
            raise ValueError(f"clusters must be >= 2 (two-concept latents need two), got {self.clusters}")
        checks.require_non_negative_number("spread", self.spread)
        if not 0 < self.fire_rate <= 1:
            raise ValueError(f"fire_rate must lie in (0, 1], got {self.fire_rate}")


@dataclass(frozen=True)
class KindSummary:
    """Scores of the latents of one kind."""

    kind: str
    """One of ``KINDS``."""
    mean_score: float
    """Mean MonoScore of its latents."""
    min_score: float
    """Lowest MonoScore of its latents."""
    max_score: float
    """Highest MonoScore of its latents."""
    mean_purity: float
    """Mean binary class purity of its latents."""


@dataclass(frozen=True)
class MonoToyResult:
    """Outcome of the synthetic MonoScore check."""

    kinds: tuple[KindSummary, ...]
    """One summary per latent kind, in ``KINDS`` order."""
    within_similarity: float
    """Mean cosine similarity of two samples of one cluster."""
    mean_similarity: float
    """Mean cosine similarity of two samples of the whole set."""
    max_pairwise_diff: float
    """Largest |streaming single-pass score - O(N^2) definition| over the latents."""


def make_mono_toy(config: MonoToyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The toy's ``acts (N, 3 L)``, ``emb (N, D)`` and cluster labels ``(N,)``, float64."""
    gen = torch.Generator().manual_seed(config.seed)
    centers = torch.nn.functional.normalize(torch.randn(config.clusters, config.dim, generator=gen), dim=1)
    labels = torch.arange(config.clusters).repeat_interleave(config.per_cluster)
    noise = torch.randn(labels.numel(), config.dim, generator=gen) * (config.spread / math.sqrt(config.dim))
    emb = (centers[labels] + noise).double()
    n, per_kind = labels.numel(), config.latents_per_kind
    acts = torch.zeros(n, 3 * per_kind, dtype=torch.float64)
    strength = 0.2 + 0.8 * torch.rand(n, 3 * per_kind, generator=gen, dtype=torch.float64)
    for j in range(per_kind):
        first, second = j % config.clusters, (j + 1) % config.clusters
        acts[:, j] = strength[:, j] * (labels == first)
        acts[:, per_kind + j] = strength[:, per_kind + j] * ((labels == first) | (labels == second))
    fires = torch.rand(n, per_kind, generator=gen) < config.fire_rate
    acts[:, 2 * per_kind :] = strength[:, 2 * per_kind :] * fires
    return acts, emb, labels


def _mean_pair_similarity(unit: torch.Tensor) -> float:
    """Mean of ``ê_n . ê_m`` over pairs ``n != m``, from ``|sum ê|^2`` (exact for unit rows)."""
    n = unit.shape[0]
    return float((unit.sum(dim=0).square().sum() - n) / (n * (n - 1)))


def run_mono_toy(config: MonoToyConfig = MonoToyConfig()) -> MonoToyResult:
    """Score the toy's latents by streaming ``MonoScore`` and compare with the definition."""
    acts, emb, labels = make_mono_toy(config)
    metric = MonoScore(acts.shape[1], emb.shape[1])
    for rows in torch.arange(acts.shape[0]).split(config.batch):
        metric.update(acts[rows].float(), emb[rows].float())
    scores = metric.compute()
    reference = mono_score_pairwise(acts, emb)
    purity = class_purity(acts, labels, num_classes=config.clusters).binary
    unit = torch.nn.functional.normalize(emb, dim=1)
    within = sum(_mean_pair_similarity(unit[labels == c]) for c in range(config.clusters)) / config.clusters
    per_kind = config.latents_per_kind
    kinds = tuple(
        KindSummary(
            kind,
            float(scores[i * per_kind : (i + 1) * per_kind].mean()),
            float(scores[i * per_kind : (i + 1) * per_kind].min()),
            float(scores[i * per_kind : (i + 1) * per_kind].max()),
            float(purity[i * per_kind : (i + 1) * per_kind].mean()),
        )
        for i, kind in enumerate(KINDS)
    )
    return MonoToyResult(
        kinds=kinds,
        within_similarity=within,
        mean_similarity=_mean_pair_similarity(unit),
        max_pairwise_diff=float((scores - reference).abs().max()),
    )


def check_mono_toy_claims(result: MonoToyResult, tolerance: float = 0.05) -> list[Claim]:
    """The claims the toy demonstrates, checked on ``result``."""
    one, two, random = result.kinds
    return [
        Claim(
            f"one-concept latents score the within-cluster similarity "
            f"({one.mean_score:.3f} vs {result.within_similarity:.3f}, within {tolerance})",
            abs(one.mean_score - result.within_similarity) < tolerance,
        ),
        Claim(
            f"random latents score the mean similarity of the set "
            f"({random.mean_score:.3f} vs {result.mean_similarity:.3f}, within {tolerance})",
            abs(random.mean_score - result.mean_similarity) < tolerance,
        ),
        Claim(
            f"two-concept latents lie between ({random.max_score:.3f} < {two.min_score:.3f} "
            f"<= {two.max_score:.3f} < {one.min_score:.3f})",
            random.max_score < two.min_score <= two.max_score < one.min_score,
        ),
        Claim(
            f"the streaming single-pass score equals the O(N^2) definition "
            f"(max |diff| {result.max_pairwise_diff:.1e} < 1e-5)",
            result.max_pairwise_diff < 1e-5,
        ),
    ]
