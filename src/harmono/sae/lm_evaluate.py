"""An SAE in a language model's forward pass: cross-entropy loss recovered and KL divergence.

On held-out contexts the model runs three times: clean; with the activation at
the SAE's hook point replaced by the SAE's reconstruction ("spliced"); and
with it replaced by zeros ("zero-ablated"). Over every next-token prediction
of the contexts (their first ``skip_first`` positions are replaced like the
others, but not scored)::

    CE recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean)     1: as good as the model, 0: as zeros
    KL           = mean over tokens of KL(p_clean || p_spliced)      nats

as SAELens and SAEBench report them. An SAE trained on L2-normalised rows
(harmono's default) reconstructs each row's direction, which is scaled back
to the row's norm before it goes into the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harmono.features.lm_hooks import replacing, resolve_hook
from harmono.sae.base import SAE


@dataclass(frozen=True)
class LMEvaluation:
    """How well the model works with an SAE in place of one activation."""

    tokens: int
    """Next-token predictions scored."""
    ce_clean: float
    """Cross-entropy (nats) of the model as it is."""
    ce_spliced: float
    """With the SAE's reconstruction in place of the activation."""
    ce_zero: float
    """With zeros in place of the activation."""
    ce_recovered: float
    """``(ce_zero - ce_spliced) / (ce_zero - ce_clean)``."""
    kl: float
    """Mean KL divergence of the spliced model's next-token distribution from the clean one's."""

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def _reconstruct(sae: SAE, l2_normalize: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def change(activation: torch.Tensor) -> torch.Tensor:
        rows = activation.reshape(-1, activation.shape[-1]).float()
        norms = rows.norm(dim=1, keepdim=True).clamp_min(1e-12) if l2_normalize else None
        _, recon = sae.reconstruct(rows / norms if norms is not None else rows)
        recon = recon * norms if norms is not None else recon
        return recon.reshape(activation.shape).to(activation.dtype)

    return change


@torch.no_grad()
def evaluate_in_model(
    sae: SAE,
    model: nn.Module,
    logits: Callable[[torch.Tensor], torch.Tensor],
    tokens: np.ndarray,
    hook: str,
    context: int = 128,
    contexts: int = 64,
    skip_first: int = 1,
    l2_normalize: bool = True,
    batch_size: int = 8,
    progress: bool = True,
) -> LMEvaluation:
    """Cross-entropy recovered and KL of ``sae`` at ``hook`` of ``model`` on ``tokens``.

    Parameters
    ----------
    sae : SAE
        Any SAE (harmono's or a ``ForeignSAE``) with ``d_in`` the hook's width.
    model : nn.Module
        The causal LM the hook point names a module of.
    logits : callable
        Token ids ``(B, T)`` -> next-token logits ``(B, T, V)`` of ``model``.
    tokens : np.ndarray
        ``(N,)`` held-out token stream; the first ``contexts`` contexts of ``context + 1`` tokens are used.
    hook : str
        The hook point (see :mod:`harmono.features.lm_hooks`), as the SAE's store was extracted.
    context, contexts : int
        Tokens per context and how many contexts.
    skip_first : int
        Leading positions of each context not scored (the store left them out too).
    l2_normalize : bool
        The SAE takes unit rows (harmono's default training); reconstructions are scaled back.
    batch_size : int
        Contexts per forward pass.
    progress : bool
        Show a progress bar.
    """
    point = resolve_hook(model, hook)
    available = len(tokens) // (context + 1)
    if available < 1 or not 0 <= skip_first < context:
        raise ValueError(f"expected at least {context + 1} tokens and 0 <= skip_first < context = {context}, "
                         f"got {len(tokens)} tokens and skip_first {skip_first}")  # fmt: skip
    count = min(contexts, available)
    windows = np.asarray(tokens[: count * (context + 1)], dtype=np.int64).reshape(count, context + 1)
    device = next(model.parameters()).device
    sae = sae.to(device).eval()
    spliced, zero = _reconstruct(sae, l2_normalize), torch.zeros_like
    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0}
    scored = 0
    for begin in tqdm(range(0, count, batch_size), desc="CE recovered", disable=not progress):
        window = torch.from_numpy(windows[begin : begin + batch_size]).to(device)
        idx, targets = window[:, :-1], window[:, 1:, None]
        clean = logits(idx).float().log_softmax(-1)[:, skip_first:]
        with replacing(model, point, spliced):
            with_sae = logits(idx).float().log_softmax(-1)[:, skip_first:]
        with replacing(model, point, zero):
            without = logits(idx).float().log_softmax(-1)[:, skip_first:]
        target = targets[:, skip_first:]
        for name, log_probs in (("clean", clean), ("spliced", with_sae), ("zero", without)):
            totals[name] -= float(log_probs.gather(-1, target).sum())
        totals["kl"] += float(F.kl_div(with_sae, clean, log_target=True, reduction="sum"))
        scored += target.numel()
    ce = {name: totals[name] / scored for name in ("clean", "spliced", "zero")}
    gap = ce["zero"] - ce["clean"]
    recovered = (ce["zero"] - ce["spliced"]) / gap if gap != 0 else float("nan")
    return LMEvaluation(scored, ce["clean"], ce["spliced"], ce["zero"], recovered, totals["kl"] / scored)
