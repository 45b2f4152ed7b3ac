"""Data efficiency: final test accuracy against the train fraction, both heads, one stack per architecture.

``harmono toy efficiency`` runs it; its records go with the suite's into
``results/toy`` (:mod:`harmono.experiments.harmonic.toy_tables` lays them out).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from harmono.experiments.harmonic.toy_suite import (
    DEFAULT_EXPONENT,
    model_label,
    run_stack,
    suite_variants,
)
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS
from harmono.models.toy import HEADS

EFFICIENCY_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Train fractions of harmono's data-efficiency curves."""


def run_efficiency(
    task: str,
    out_dir: str | Path,
    fractions: Sequence[float] = EFFICIENCY_FRACTIONS,
    archs: Sequence[str] = ("mlp",),
    seeds: Sequence[int] = PAPER_SEEDS[:3],
    progress: bool = True,
    device: str | torch.device = "cpu",
    samplings: Sequence[str] = ("leak-free",),
    results_dir: str | Path | None = None,
    exponents: Sequence[float] = (DEFAULT_EXPONENT,),
    **train_overrides: object,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Final test accuracy vs train fraction, both heads, into ``out_dir/<run_name>`` (one stack per arch).

    ``exponents`` give one harmonic curve each. Returns ``{task: {curve name:
    (fractions (F,), accuracy (S, F))}}``, the input of
    :func:`~harmono.analysis.toy_figures.plot_data_efficiency` (finished runs
    are reused).
    """
    curves = {}
    for arch in archs:
        variants = [
            (name, head, model, {**train_overrides, **train})
            for name, head, model, train in suite_variants(task, arch, HEADS, samplings, exponents, fractions)
        ]
        records = iter(run_stack(task, arch, variants, out_dir, seeds, progress, device, results_dir))
        for head in HEADS:  # suite_variants' order: head, sampling, exponent, fraction
            for sampling in samplings:
                for exponent in exponents if head == "harmonic" else (DEFAULT_EXPONENT,):
                    accuracy = [[s["final_test_acc"] for s in next(records)["seeds"]] for _ in fractions]
                    curves[model_label(arch, head, sampling, exponent)] = (
                        np.asarray(fractions, dtype=float),
                        np.asarray(accuracy).T,
                    )
    return {task: curves}
