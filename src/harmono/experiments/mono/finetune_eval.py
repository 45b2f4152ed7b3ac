"""Evaluation of a finetuned classifier (accuracy, cross-entropy, MonoScore) and a run's saved results."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from harmono.core.io import read_json
from harmono.data.image_batches import SquareImages, load_batches, rank_batches
from harmono.experiments.mono.finetune_reference import Reference
from harmono.models.classifier import MonoClassifier
from harmono.mono import MonoScore, summarize
from harmono.training.runs import world

RESULTS_FILE = "results.json"
"""The final validation record of a finished run, in its run directory."""


def evaluate_classifier(
    model: MonoClassifier,
    data: SquareImages,
    reference: Reference,
    batch_size: int,
    device: torch.device,
    workers: int = 0,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float | int]:
    """Accuracy, cross-entropy and the MonoScore of the intermediate layer over ``data`` (all ranks together).

    ``reference(pixels in [0, 1] (B, 3, S, S), positions (B,)) -> (B, E)`` gives the reference embeddings
    and ``reference.dim`` is ``E``.
    ``batch_size`` counts the images of a batch over all ranks (each rank evaluates its slice).
    The MonoScore is the dataset-wide one (min-max over all of ``data``), summarised as the mean over units
    with a score, the mean with dead units as 0 (the MonoLoss evaluation) and the number of dead units.
    """
    rank, size = world()
    order = np.arange(len(data))
    metric = MonoScore(model.width, reference.dim, dead="nan").to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # correct, summed ce, count
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels, positions in load_batches(
            data, rank_batches(order, batch_size, rank, size, False), workers
        ):
            pixels = images.to(device).float().div_(255.0)
            labels = labels.to(device)
            with autocast or contextlib.nullcontext():
                output = model(model.normalize(pixels))
            logits = output.logits.float()
            sums[0] += (logits.argmax(dim=1) == labels).sum()
            sums[1] += F.cross_entropy(logits, labels, reduction="sum").double()
            sums[2] += len(labels)
            metric.update(output.hidden.float(), reference(pixels, positions).to(device))
    model.train(was_training)
    if size > 1:
        dist.all_reduce(sums)
    summary = summarize(metric.compute())
    return {
        "val_accuracy": float(sums[0] / sums[2]),
        "val_ce": float(sums[1] / sums[2]),
        "val_monoscore": summary.mean_dead_as_zero,
        "val_monoscore_alive": summary.mean,
        "val_dead_units": summary.num_dead,
    }


def read_results(out: str | Path) -> dict | None:
    """``results.json`` of a finished run in ``out``, or None."""
    path = Path(out) / RESULTS_FILE
    return read_json(path, "a finetune run's results") if path.is_file() else None
