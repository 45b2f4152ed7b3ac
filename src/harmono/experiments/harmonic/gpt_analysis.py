"""Compare the embedding geometry of trained GPTs: parallelogram losses of word analogies.

For each model (a run directory or a saved ``model/``), each analogy task of
:data:`harmono.data.analogies.ANALOGY_TASKS` and each number of principal
components, the parallelogram loss of up to ``max_quadruples`` quadruples of
word pairs is computed on the tied token embedding ``wte`` (the harmonic
head's class centers), next to a chance baseline of random token quadruples.
Runs with the same label (by default the head) are pooled, so several seeds
give one curve per head. Models that share a tokenizer are scored on the
same quadruples, and for each pair of labels the share of quadruples on which
one has the lower loss is reported (seed-averaged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from harmono.analysis.parallelogram import (
    analogy_quadruples,
    parallelogram_loss,
    plot_cdfs,
    principal_projection,
    random_quadruple_loss,
    summarize,
)
from harmono.core.io import write_json_atomically
from harmono.data.analogies import ANALOGY_TASKS, pair_token_ids
from harmono.data.text import TOKENIZER_FILE, load_tokenizer
from harmono.experiments.harmonic.gpt_train import MODEL_DIR
from harmono.models.gpt import GPT

ANALYSIS_FILE = "parallelograms.json"


@dataclass(frozen=True)
class AnalogyConfig:
    """What :func:`analyze_embeddings` measures."""

    num_pcs: tuple[int, ...] = (5, 2, 10)
    """Principal components the embeddings are projected on; the first one is plotted (paper: 5)."""
    rule: str = "whole"
    """Which token stands for a word: ``whole`` (words that are one token) or ``last`` (the paper's)."""
    max_quadruples: int = 10_000
    """Quadruples per task (all ordered pairs of pairs when fewer)."""
    min_pairs: int = 5
    """Tasks with fewer usable pairs under a tokenizer are skipped."""
    seed: int = 0
    """Seed of the quadruple sample and of the random baseline."""


def model_directory(path: str | Path) -> Path:
    """The saved model of a run directory (its ``model/``), or ``path`` itself when it is one."""
    path = Path(path)
    return path / MODEL_DIR if (path / MODEL_DIR).is_dir() else path


def _usable_pairs(tokenizer, config: AnalogyConfig) -> dict[str, torch.Tensor]:
    """Token-id pairs ``(P, 2)`` of every task that keeps at least ``min_pairs`` pairs."""

    def encode(word: str) -> list[int]:
        return tokenizer.encode(word).ids

    pairs = {}
    for task, words in ANALOGY_TASKS.items():
        ids, _ = pair_token_ids(encode, words, config.rule)
        if len(ids) >= config.min_pairs:
            pairs[task] = ids
    return pairs


def analyze_embeddings(
    models: Sequence[str | Path], out: str | Path, config: AnalogyConfig = AnalogyConfig(),
    labels: Sequence[str] | None = None, plot: bool = True,
) -> dict:  # fmt: skip
    """Parallelogram losses of the models' token embeddings; writes ``parallelograms.json`` (+ CDF plot).

    Parameters
    ----------
    models : sequence of paths
        Run directories of ``harmono gpt train`` or saved models; each needs its ``tokenizer.json``.
    out : str or Path
        Folder for ``parallelograms.json`` and ``parallelograms-<k>pc.png``.
    config : AnalogyConfig
    labels : sequence of str, optional
        One per model; runs with the same label are pooled. Default: each model's head.
    plot : bool
        Write the CDF figure (needs matplotlib).

    Returns
    -------
    dict
        ``{"config", "runs", "tasks": {task: {label: {k: summary}}}, "baseline": {label: {k: summary}},
        "lower_share": {task: {"A<B": share}}}`` (see the module docstring; empty when the
        models' tokenizers differ).
    """
    if not models:
        raise ValueError("expected at least one model, got none")
    if labels is not None and len(labels) != len(models):
        raise ValueError(f"expected one label per model ({len(models)}), got {len(labels)}")
    losses: dict[str, dict[str, dict[int, list[torch.Tensor]]]] = {}
    baseline: dict[str, dict[int, list[torch.Tensor]]] = {}
    runs, tokenizers = [], set()
    for index, path in enumerate(models):
        directory = model_directory(path)
        if not (directory / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(f"expected {TOKENIZER_FILE} beside the model in {directory}, found none")
        model = GPT.from_pretrained(directory)
        label = labels[index] if labels is not None else model.config.head
        emb = model.wte.weight.detach()
        pairs = _usable_pairs(load_tokenizer(directory), config)
        tokenizers.add((directory / TOKENIZER_FILE).read_bytes())
        runs.append(
            {"path": str(path), "label": label, "pairs": {task: len(ids) for task, ids in pairs.items()}}
        )
        words = torch.unique(torch.cat(list(pairs.values())).flatten()) if pairs else torch.arange(len(emb))
        quadruples = {
            task: analogy_quadruples(len(ids), config.max_quadruples, config.seed)
            for task, ids in pairs.items()
        }
        # One PCA of the (V, D) embeddings per run: the top k PCs of this projection on the top
        # max(num_pcs) PCs span the same subspace as the top k PCs of emb, and the loss is a norm in it.
        top = principal_projection(emb, max(config.num_pcs))
        for k in config.num_pcs:
            for task, ids in pairs.items():
                task_losses = parallelogram_loss(top, ids, quadruples[task], num_pcs=k)
                losses.setdefault(task, {}).setdefault(label, {}).setdefault(k, []).append(task_losses)
            chance = random_quadruple_loss(top, words, config.max_quadruples, num_pcs=k, seed=config.seed)
            baseline.setdefault(label, {}).setdefault(k, []).append(chance)
    result = {
        "config": {**config.__dict__, "num_pcs": list(config.num_pcs)},
        "runs": runs,
        "tasks": {task: _summaries(per_label) for task, per_label in losses.items()},
        "baseline": _summaries(baseline),
        "lower_share": _lower_shares(losses, config.num_pcs[0]) if len(tokenizers) == 1 else {},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / ANALYSIS_FILE, result, indent=1)
    if plot:
        k = config.num_pcs[0]
        curves: dict[str, dict[str, torch.Tensor]] = {}
        for task, per_label in losses.items():
            for label, per_k in per_label.items():
                curves.setdefault(label, {})[task] = torch.cat(per_k[k])
        for label, per_k in baseline.items():
            curves.setdefault(label, {})["random quadruples"] = torch.cat(per_k[k])
        plot_cdfs(curves, out / f"parallelograms-{k}pc.png", title=f"parallelogram loss on the top {k} PCs")
    return result


def _summaries(per_label: Mapping[str, Mapping[int, list[torch.Tensor]]]) -> dict:
    """``{label: {str(k): summary of the losses pooled over the label's runs}}``."""
    return {
        label: {str(k): summarize(torch.cat(runs)) for k, runs in per_k.items()}
        for label, per_k in per_label.items()
    }


def _lower_shares(losses: Mapping[str, Mapping[str, Mapping[int, list[torch.Tensor]]]], k: int) -> dict:
    """Per task, for each ordered pair of labels, the share of quadruples where the first has the lower loss.

    Only meaningful when all models share a tokenizer (then the quadruples are
    the same). Runs are matched by position (seed i of one label against seed
    i of the other) and the shares averaged; ties count half.
    """
    shares: dict[str, dict[str, float]] = {}
    for task, per_label in losses.items():
        names = sorted(per_label)
        for first in names:
            for second in names:
                mine, theirs = per_label[first][k], per_label[second][k]
                if first == second or len(mine) != len(theirs):
                    continue
                values = [
                    float(((a < b).double() + 0.5 * (a == b).double()).mean())
                    for a, b in zip(mine, theirs, strict=True)
                ]
                shares.setdefault(task, {})[f"{first}<{second}"] = sum(values) / len(values)
    return shares
