"""Independent float64 references for the MonoScore, the batch MonoLoss and class purity.

Written from the definitions with explicit pair lists and loops, sharing no
code with ``harmono.mono``; small N only.
"""

import math

import torch


def naive_mono_score(acts, emb, eps=0.0):
    """MS_k = sum_{n<m} ã_n ã_m s_nm / sum_{n<m} ã_n ã_m over the explicit list of pairs n < m.

    ``ã = (a - min) / (max - min + eps)`` per latent; NaN where the pair weight is 0.
    """
    acts, emb = acts.double(), emb.double()
    n, m = acts.shape
    unit = emb / emb.norm(dim=1, keepdim=True)
    first, second = torch.triu_indices(n, n, offset=1)
    sim = (unit[first] * unit[second]).sum(dim=1)
    scores = torch.full((m,), math.nan, dtype=torch.float64)
    for k in range(m):
        column = acts[:, k]
        spread = column.max() - column.min()
        if spread == 0:
            continue
        normed = (column - column.min()) / (spread + eps)
        weight = normed[first] * normed[second]
        if weight.sum() > 0:
            scores[k] = (weight * sim).sum() / weight.sum()
    return scores


def closed_form_loss_grad(acts, emb):
    """d(1 - mean_{k active} MS_k^(batch)) / d acts from the reference's closed form (eps -> 0).

    dMS_k/dã_ik = sum_{j != i} ã_jk (s_ij - MS_k) / Z_k with Z_k = sum_{i<j} ã_ik ã_jk, then the
    chain rule through ã = (a - min) / (max - min); the gradient of the min (max) is split equally among
    the entries that attain it, as in the official full-dataset gradient (reference §2.6).
    """
    acts, emb = acts.double(), emb.double()
    n, m = acts.shape
    unit = emb / emb.norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    off_diagonal = 1.0 - torch.eye(n, dtype=torch.float64)
    grad = torch.zeros_like(acts)
    scores = naive_mono_score(acts, emb)
    active = ~torch.isnan(scores)
    for k in torch.nonzero(active).flatten().tolist():
        column = acts[:, k]
        low, high = column.min(), column.max()
        spread = high - low
        normed = (column - low) / spread
        pair_weight = 0.5 * (normed.sum() ** 2 - (normed**2).sum())
        d_normed = ((sim - scores[k]) * off_diagonal) @ normed / pair_weight
        d_normed = -d_normed / int(active.sum())
        d_column = d_normed / spread
        d_low = (d_normed * (normed - 1.0)).sum() / spread
        d_high = -(d_normed * normed).sum() / spread
        at_low, at_high = column == low, column == high
        d_column[at_low] += d_low / int(at_low.sum())
        d_column[at_high] += d_high / int(at_high.sum())
        grad[:, k] = d_column
    return grad


def naive_purity(acts, labels, num_classes, threshold=0.0):
    """Per-latent (binary, weighted, dominant class, num active) by a loop over latents."""
    results = []
    for k in range(acts.shape[1]):
        column = acts[:, k].double()
        on = column > threshold
        if not on.any():
            results.append((math.nan, math.nan, -1, 0))
            continue
        counts = [int(((labels == c) & on).sum()) for c in range(num_classes)]
        dominant = counts.index(max(counts))
        in_dominant = on & (labels == dominant)
        weighted = float(column[in_dominant].sum() / column[on].sum())
        results.append((max(counts) / int(on.sum()), weighted, dominant, int(on.sum())))
    return results
