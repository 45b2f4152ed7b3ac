"""Evaluate an SAE in one streaming pass over a feature store.

Reconstruction is reported the way the SAE literature's most careful
libraries settled on: ``FVU = Σ_n ‖x_n − x̂_n‖² / Σ_n ‖x_n − x̄‖²`` with the
numerator and the denominator summed separately over the whole set and ``x̄``
the per-dimension mean (not a mean of per-sample ratios, and not the
variance about zero); ``R² = 1 − FVU``. Also: L0, the fraction of latents
that never fire on the set, the mean cosine similarity of ``x`` and ``x̂``,
MonoScore (``harmono.MonoScore``; both dead-latent conventions, embeddings
the SAE input or a second store) and class purity (``harmono.ClassPurity``)
where the store has labels, and a per-latent table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harmono.core.io import write_json_atomically
from harmono.features.store import FeatureStore
from harmono.mono import MonoScore, MonoSummary, summarize
from harmono.mono.purity import ClassPurity
from harmono.mono.token_identity import TokenIdentityMonoScore
from harmono.sae.base import SAE
from harmono.sae.token_contexts import is_token_store, neighbour_activations
from harmono.sae.top_activations import TopActivations

EVALUATION_FILE = "evaluation.json"
"""Per-latent table and summary that ``harmono sae eval`` writes into a run directory."""
TOP_ACTIVATIONS_FILE = "top_activations.safetensors"
"""Each latent's strongest activations and their store rows, beside ``EVALUATION_FILE``."""


@dataclass(frozen=True)
class SAEEvaluation:
    """Dataset-level metrics of an SAE on a store."""

    rows: int
    """Samples evaluated."""
    r2: float
    """1 - FVU."""
    fvu: float
    """Fraction of variance unexplained (sums over the set, per-dimension mean)."""
    l0: float
    """Mean number of active latents per sample."""
    dead_fraction: float
    """Latents that fire on no sample of the set."""
    cosine: float
    """Mean cosine similarity of inputs and reconstructions."""
    mono: dict
    """``MonoSummary`` fields: mean/median/p90 without dead latents and with them as 0."""
    purity_binary: float
    """Mean binary class purity over latents that fire (NaN without labels)."""
    purity_weighted: float
    """Mean activation-weighted class purity over latents that fire (NaN without labels)."""
    mono_tokens: dict | None = None
    """Token stores with ``token_identity``: ``MonoSummary`` fields of MonoScore against token identity."""

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


@torch.no_grad()
def evaluate_sae(
    sae: SAE,
    store: FeatureStore,
    batch_size: int = 4096,
    l2_normalize: bool = True,
    embeddings: FeatureStore | None = None,
    table: str | Path | None = None,
    top_activations: str | Path | None = None,
    per_latent: int = 9,
    progress: bool = True,
    token_identity: bool = False,
) -> SAEEvaluation:
    """Stream ``store`` through ``sae`` once and compute ``SAEEvaluation``.

    Parameters
    ----------
    sae : SAE
        Evaluated in eval mode (BatchTopK uses its threshold).
    store : FeatureStore
        Features (and labels, for purity).
    batch_size : int
        Rows per batch (results do not depend on it, except through BatchTopK's training mode).
    l2_normalize : bool
        Normalise rows as the training did.
    embeddings : FeatureStore, optional
        MonoScore embeddings, row-aligned with ``store`` (default: the SAE input).
    table : str or Path, optional
        Write the per-latent table (score, frequency, dominant class, purity) here as JSON,
        with the summary, what the SAE is (``SAE.describe``), the store's directory and the
        normalisation.
    top_activations : str or Path, optional
        Write each latent's ``per_latent`` strongest activations and their store rows here
        (safetensors, see ``harmono.sae.top_activations``); for a token store also the latent's
        activation around its top tokens (``harmono.sae.token_contexts``).
    per_latent : int
        Samples kept per latent for ``top_activations``.
    progress : bool
        Show a progress bar.
    token_identity : bool
        Also score the latents against the identity of each row's token (a token store's labels,
        ``harmono.mono.token_identity``): how much a latent fires on one single token.
    """
    if len(store) == 0:
        raise ValueError(f"{store.directory}: expected a store with features, got 0 rows")
    if store.dim != sae.config.d_in:
        raise ValueError(
            f"expected features of d_in = {sae.config.d_in}, got {store.directory} with {store.dim}"
        )
    if embeddings is not None and embeddings.ids != store.ids:
        raise ValueError(f"expected embeddings with the ids of {store.directory}, got {embeddings.directory}")
    sae.eval()
    d_in, d_sae = sae.config.d_in, sae.config.d_sae
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_x2 = torch.zeros(d_in, dtype=torch.float64)
    sum_e2 = torch.zeros(d_in, dtype=torch.float64)
    fired = torch.zeros(d_sae, dtype=torch.int64)
    l0_sum = cosine_sum = 0.0
    emb_dim = embeddings.dim if embeddings is not None else d_in
    mono = MonoScore(d_sae, emb_dim, dead="nan")
    class_names = store.metadata.get("class_names") or []
    purity = ClassPurity(d_sae, len(class_names)) if class_names else None
    top = TopActivations(d_sae, per_latent) if top_activations is not None else None
    tokens = TokenIdentityMonoScore(d_sae) if token_identity else None
    view = store.view()
    for batch in tqdm(view.batches(batch_size, normalize=l2_normalize), total=-(-len(store) // batch_size),
                      desc="evaluate", disable=not progress):  # fmt: skip
        x = batch.features
        latents, recon = sae.reconstruct(x)
        sum_x += x.sum(dim=0, dtype=torch.float64)
        sum_x2 += x.double().square().sum(dim=0)
        sum_e2 += (recon - x).double().square().sum(dim=0)
        active = latents != 0
        fired += active.sum(dim=0)
        l0_sum += float(active.sum())
        cosine_sum += float(torch.nn.functional.cosine_similarity(recon, x, dim=1).sum())
        emb = x
        if embeddings is not None:
            emb = torch.from_numpy(embeddings.take(batch.indices.numpy(), "float32"))
        mono.update(latents.float(), emb)
        if purity is not None:
            purity.update(latents.float(), batch.labels)
        if top is not None:
            top.update(latents, batch.indices)
        if tokens is not None:
            tokens.update(latents, batch.labels)
    n = len(store)
    variance = float((sum_x2 - sum_x.square() / n).sum())
    fvu = float(sum_e2.sum()) / variance if variance > 0 else float("nan")
    scores = mono.compute()
    summary: MonoSummary = summarize(scores)
    per_latent = purity.compute() if purity is not None else None
    firing = fired > 0
    result = SAEEvaluation(
        rows=n,
        r2=1 - fvu,
        fvu=fvu,
        l0=l0_sum / n,
        dead_fraction=float((~firing).float().mean()),
        cosine=cosine_sum / n,
        mono=summary.as_dict(),
        purity_binary=float(per_latent.binary[firing].mean()) if per_latent is not None else float("nan"),
        purity_weighted=float(per_latent.weighted[firing].mean()) if per_latent is not None else float("nan"),
        mono_tokens=summarize(tokens.compute()).as_dict() if tokens is not None else None,
    )
    if table is not None:
        rows = []
        for i in range(d_sae):
            row = {"latent": i, "mono_score": None if torch.isnan(scores[i]) else float(scores[i]),
                   "frequency": int(fired[i]) / n}  # fmt: skip
            if per_latent is not None:
                dominant = int(per_latent.dominant_class[i])
                row["dominant_class"] = class_names[dominant] if dominant >= 0 else None
                row["purity_binary"] = float(per_latent.binary[i])
                row["purity_weighted"] = float(per_latent.weighted[i])
            rows.append(row)
        record = {
            "summary": result.as_dict(),
            "sae": sae.describe(),
            "features": str(Path(store.directory).resolve()),
            "l2_normalize": l2_normalize,
            "latents": rows,
        }
        write_json_atomically(Path(table), record)
    if top is not None:
        neighbours = None
        if is_token_store(store):  # the latent's activation around its top tokens, for the text view
            neighbours = neighbour_activations(sae, store, top.rows, l2_normalize=l2_normalize)
        top.save(top_activations, neighbours)
    return result
