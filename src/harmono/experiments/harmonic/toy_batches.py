"""A toy stack's passes over its data: each model's training batches, and the accuracy passes.

Each seed draws from its own streams (:func:`seed_generator`): stream 1
shuffles its training split and draws its training dropout, stream 2 its
dropout at evaluation (``ToyTrainConfig.eval_dropout``), apart from the
initialisation's; so a model sees the same batches and masks in any stack.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from harmono.data.toy import ToySplit
from harmono.experiments.harmonic.stacked_adamw import StackedAdamW
from harmono.experiments.harmonic.toy_tasks import embedding_penalty
from harmono.models.toy_stack import DROPOUT_SITES, BatchedToyModel

EVALUATION_ROWS = 8192
"""Rows (examples x models) per evaluation chunk."""

TRAINING_STREAM, EVALUATION_STREAM = 1, 2
"""Seed streams apart from the initialisation's: shuffling and training dropout; evaluation dropout."""


def seed_generator(seed: int, stream: int) -> torch.Generator:
    """Stream ``stream`` of seed ``seed`` (``TRAINING_STREAM`` or ``EVALUATION_STREAM``)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


def _padded(rows: list[np.ndarray], fill: int = 0) -> torch.Tensor:
    """``rows`` of different lengths as one ``(len(rows), longest)`` int64 tensor padded with ``fill``."""
    out = np.full((len(rows), max(len(r) for r in rows)), fill, dtype=np.int64)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row
    return torch.from_numpy(out)


class EvaluationSet:
    """Each model's distinct examples, with how often each sits in its train and its test split.

    Accuracy is then one pass over ``ids (S, U)`` weighted by the counts,
    the same number as a pass over every drawn example (the paper's
    sampling draws many examples twice). With ``seeds`` the training
    dropout is on: each pass, model ``k`` draws the masks of its distinct
    examples in order, ``(U_k, mask_width)`` values as in
    :meth:`~harmono.models.toy_stack.BatchedToyModel.dropout_masks`, from
    the evaluation generator of ``seeds[k]`` (an example drawn twice counts
    one mask twice). ``sites`` (names from ``DROPOUT_SITES``; default all)
    keeps dropout on at those sites only: the masks are drawn as before and
    the others set to one, so each site sees the same masks in any choice.
    """

    def __init__(
        self,
        splits: Sequence[ToySplit],
        device: torch.device,
        seeds: Sequence[int] | None = None,
        sites: Collection[str] = DROPOUT_SITES,
    ) -> None:
        unknown = sorted(set(sites) - set(DROPOUT_SITES))
        if unknown:
            raise ValueError(f"sites must be among {DROPOUT_SITES}, got {unknown}")
        ids, train_counts, test_counts = [], [], []
        for split in splits:
            unique, inverse = np.unique(
                np.concatenate([split.train_ids, split.test_ids]), return_inverse=True
            )
            n_train = len(split.train_ids)
            ids.append(unique)
            train_counts.append(np.bincount(inverse[:n_train], minlength=len(unique)))
            test_counts.append(np.bincount(inverse[n_train:], minlength=len(unique)))
        self.ids = _padded(ids).to(device)
        self.distinct = [len(unique) for unique in ids]
        self.train_counts = _padded(train_counts).double().to(device)
        self.test_counts = _padded(test_counts).double().to(device)
        self.generators = (
            None if seeds is None else [seed_generator(seed, EVALUATION_STREAM) for seed in seeds]
        )
        self.sites = frozenset(sites)

    def _mask_chunks(self, model: BatchedToyModel, chunk: int) -> list[list[torch.Tensor]] | None:
        """The dropout masks of one pass, per chunk of ``chunk`` examples; ``None`` when dropout is off."""
        masks = None if self.generators is None else model.dropout_masks(self.generators, self.distinct, 1)
        if masks is None:
            return None
        masks = [
            mask if DROPOUT_SITES[k % len(DROPOUT_SITES)] in self.sites else torch.ones_like(mask)
            for k, mask in enumerate(masks)
        ]
        pieces = [m[:, :, 0].to(self.ids.device).split(chunk, dim=1) for m in masks]
        return [list(parts) for parts in zip(*pieces, strict=True)]

    @torch.no_grad()
    def accuracy(
        self, model: BatchedToyModel, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S,)`` train and test accuracy of each model from the task's examples.

        Dropout is on when the set was made with ``seeds`` (each call draws
        new masks), off otherwise. Examples go through in chunks of about ``EVALUATION_ROWS`` rows (all
        models together), whose activations stay in the CPU cache.
        """
        chunk = max(1, EVALUATION_ROWS // self.ids.shape[0])
        id_chunks = self.ids.split(chunk, dim=1)
        mask_chunks = self._mask_chunks(model, chunk) or [None] * len(id_chunks)
        correct = torch.cat(
            [
                model.predict(inputs[ids], masks) == labels[ids]
                for ids, masks in zip(id_chunks, mask_chunks, strict=True)
            ],
            dim=1,
        ).double()
        return (
            (correct * self.train_counts).sum(1) / self.train_counts.sum(1),
            (correct * self.test_counts).sum(1) / self.test_counts.sum(1),
        )


class StackBatches:
    """Each model's shuffled batches of its own training split, padded to the longest epoch.

    Model ``k`` shuffles its ``n_k`` training examples with its own
    generator every epoch and takes ``ceil(n_k / batch_size)`` steps; in the
    steps after its last one it is left out of the update, and the padding
    rows of its last batch weigh nothing in its loss. The models come
    sorted by their number of steps, longest first, so the models of a step
    are the first ones of the stack and only those are computed.
    """

    def __init__(self, splits: Sequence[ToySplit], batch_size: int, seeds: list[int], device: torch.device):
        self.batch_size = batch_size
        self.train_ids = _padded([s.train_ids for s in splits]).to(device)
        self.n_train = [len(s.train_ids) for s in splits]
        self.steps = [-(-n // batch_size) for n in self.n_train]
        self.longest = max(self.steps)
        self.generators = [seed_generator(seed, TRAINING_STREAM) for seed in seeds]
        slots = torch.arange(self.longest * batch_size, device=device)
        self.weight = (slots < torch.tensor(self.n_train, device=device)[:, None]).to(torch.float32)
        if self.steps != sorted(self.steps, reverse=True):
            raise ValueError(f"models must come sorted by steps per epoch, longest first, got {self.steps}")
        self.active = torch.tensor([[step < count for count in self.steps] for step in range(self.longest)])
        self.active = self.active.to(device)
        self.taking = [int(row.sum()) for row in self.active]
        """Models in each step: the first ``taking[step]`` of the stack."""

    def train_epoch(
        self,
        model: BatchedToyModel,
        optimizer: StackedAdamW,
        reg_weights: dict[str, torch.Tensor],
        inputs: torch.Tensor,
        labels: torch.Tensor,
    ) -> None:
        """One epoch of every model: shuffle, draw dropout masks, one optimizer step per batch."""
        b = self.batch_size
        order = _padded(
            [
                torch.randperm(n, generator=g).numpy()
                for n, g in zip(self.n_train, self.generators, strict=True)
            ]
        ).to(self.train_ids.device)
        order = F.pad(order, (0, self.longest * b - order.shape[1]))
        rows = self.train_ids.gather(1, order)
        masks = model.dropout_masks(self.generators, self.steps, b)
        masks = None if masks is None else [m.to(self.train_ids.device) for m in masks]
        for step, count in enumerate(self.taking):
            window = slice(step * b, (step + 1) * b)
            ids, weight = rows[:count, window], self.weight[:count, window]
            params = model.leading_params(count)
            step_masks = None if masks is None else [m[:count, step] for m in masks]
            logits = model(inputs[ids], step_masks, params=params)
            loss = F.cross_entropy(logits.flatten(0, 1), labels[ids].flatten(), reduction="none")
            total = ((loss.view_as(weight) * weight).sum(1) / weight.sum(1).clamp_min(1.0)).sum()
            for kind, reg_weight in reg_weights.items():
                total = total + (reg_weight[:count] * embedding_penalty(params["embedding"], kind)).sum()
            model.flat.grad = None
            total.backward()
            optimizer.step(self.active[step])
