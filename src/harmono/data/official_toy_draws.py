"""The official code's own draws of the toy data, seed for seed: the splits the paper's models saw.

The official code seeds numpy's legacy global generator with the run's seed,
draws ``data_size`` examples of the task with replacement, seeds it again and
picks ``int(train_fraction * n)`` of the ``n`` drawn examples, without
replacement, for training; the others test. :func:`official_split` replays
those draws with ``numpy.random.RandomState(seed)`` (the stream that
``numpy.random.seed(seed)`` starts) in the official token layout, which is
harmono's (:mod:`harmono.data.toy`). So for any seed it gives the split the
official code trained that seed on, and for the paper's seeds the paper's
splits. harmono's own ``paper_sampling`` draws from the same law with another
generator: the same leakage on average, other splits seed by seed.

How the official code draws each task:

- ``lattice``: ``5 * data_size`` triples of lattice points ``a, b, c``, every
  coordinate uniform; the first ``data_size`` whose ``b + c - a`` lies on the
  lattice.
- ``modadd``: ``data_size`` of the ``31 * 31`` pairs, uniform, pair ``k``
  being ``(k mod 31, k div 31)``.
- ``equivalence``: ``2 * data_size`` numbers uniform in ``0..39``, paired in
  order.
- ``genealogy``: ``data_size`` of its 373 facts, uniform, listed node by node
  (parent, grandparent, sibling). Its list has one fact more than harmono's
  task, the last: node 126's sibling is "127", no node of the tree but the
  parent relation's token (:data:`OFFICIAL_GENEALOGY_EXTRA`).
- ``permutation``: all 576 pairs once, pair ``(i, j)`` at ``24 i + j``, as
  in harmono's task.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from harmono.core import checks
from harmono.data.toy import (
    EQUIVALENCE_MODULUS,
    EQUIVALENCE_RANGE,
    LATTICE_SIDE,
    MODULUS,
    PAPER_DATA_SIZE,
    RELATIONS,
    TASKS,
    TREE_NODES,
    ToySplit,
    ToyTask,
    leakage,
    toy_task,
)

OFFICIAL_GENEALOGY_EXTRA = ((TREE_NODES, TREE_NODES + 1 + RELATIONS.index("sibling")), TREE_NODES + 1)
"""``(inputs, label)`` of the official genealogy's 373rd fact, which harmono's task leaves out."""


class OfficialSplit(NamedTuple):
    """One seed's split as the official code draws it: ``(N, T)`` inputs and ``(N,)`` labels, int64."""

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray

    @property
    def leakage(self) -> float:
        """Share of test examples (with their label) that also occur in training."""
        return leakage(self.train_inputs, self.train_labels, self.test_inputs, self.test_labels)


def official_examples(
    task: str, seed: int, data_size: int = PAPER_DATA_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The examples the official code draws for ``task`` and ``seed``, in its order.

    Returns
    -------
    inputs : np.ndarray
        ``(n, T)`` int64 token ids; ``n`` is ``data_size`` (576 for
        ``permutation``, used whole).
    labels : np.ndarray
        ``(n,)`` int64 token ids.
    """
    checks.require_choice("task", task, TASKS)
    data_size = checks.require_positive_int("data_size", data_size)
    rng = np.random.RandomState(seed)
    if task == "lattice":
        return _lattice(rng, data_size)
    if task == "equivalence":
        pairs = rng.choice(EQUIVALENCE_RANGE, 2 * data_size).reshape(data_size, 2)
        same = (pairs[:, 0] - pairs[:, 1]) % EQUIVALENCE_MODULUS == 0
        labels = np.where(same, EQUIVALENCE_RANGE, EQUIVALENCE_RANGE + 1)
        return pairs.astype(np.int64), labels.astype(np.int64)
    if task == "permutation":
        permutation = toy_task("permutation")
        return permutation.inputs.copy(), permutation.labels.copy()
    inputs, labels = official_facts(task)
    drawn = rng.choice(len(labels), size=data_size, replace=True)
    return inputs[drawn], labels[drawn]


def official_facts(task: str) -> tuple[np.ndarray, np.ndarray]:
    """The list the official code draws ``modadd`` or ``genealogy`` examples from: ``(U, 2)`` and ``(U,)``."""
    if task == "modadd":
        k = np.arange(MODULUS * MODULUS)
        inputs = np.stack([k % MODULUS, k // MODULUS], axis=1)
        return inputs, inputs.sum(axis=1) % MODULUS
    if task == "genealogy":
        genealogy = toy_task("genealogy")
        (subject, relation), obj = OFFICIAL_GENEALOGY_EXTRA
        return (
            np.concatenate([genealogy.inputs, [[subject, relation]]]),
            np.concatenate([genealogy.labels, [obj]]),
        )
    raise ValueError(f"task {task!r} is not drawn from a list of facts; 'modadd' and 'genealogy' are")


def official_split(
    task: str, seed: int, train_fraction: float = 0.8, data_size: int = PAPER_DATA_SIZE
) -> OfficialSplit:
    """The official code's split of ``task`` for ``seed``: its draw, cut as its ``split_dataset`` cuts it."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    inputs, labels = official_examples(task, seed, data_size)
    n = len(labels)
    train = np.random.RandomState(seed).choice(n, int(n * train_fraction), replace=False)
    test = np.setdiff1d(np.arange(n), train)
    return OfficialSplit(inputs[train], labels[train], inputs[test], labels[test])


def official_toy_split(
    task: str, seed: int, train_fraction: float = 0.8, data_size: int = PAPER_DATA_SIZE
) -> ToySplit:
    """:func:`official_split` as a :class:`~harmono.data.toy.ToySplit` to train on.

    Its ids index :func:`official_task`, whose first examples are those of
    harmono's task in their order, so a stack can hold these splits beside
    :func:`~harmono.data.toy.split_task`'s.
    """
    split = official_split(task, seed, train_fraction, data_size)
    row_of = _rows_of_examples(task)

    def rows(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        drawn = zip(inputs.tolist(), labels.tolist(), strict=True)
        return np.array([row_of[(*row, label)] for row, label in drawn], dtype=np.int64)

    train_ids = rows(split.train_inputs, split.train_labels)
    return ToySplit(*split, split.leakage, train_ids, rows(split.test_inputs, split.test_labels))


@functools.cache
def official_task(task: str) -> ToyTask:
    """The examples official splits index: harmono's ``task``, for ``genealogy`` with the official extra fact.

    The official genealogy list is harmono's with one fact appended, node
    126's "sibling" (:data:`OFFICIAL_GENEALOGY_EXTRA`); every other task's
    official examples are examples of harmono's task. Built once, arrays
    read-only (as :func:`~harmono.data.toy.toy_task`'s).
    """
    harmono = toy_task(task)
    if task != "genealogy":
        return harmono
    inputs, labels = official_facts(task)
    for array in (inputs, labels):
        array.setflags(write=False)
    return replace(harmono, inputs=inputs, labels=labels)


@functools.cache
def _rows_of_examples(task: str) -> dict[tuple[int, ...], int]:
    """``(*inputs, label) -> row`` of :func:`official_task`'s examples (built once per task)."""
    examples = official_task(task)
    pairs = zip(examples.inputs.tolist(), examples.labels.tolist(), strict=True)
    return {(*row, label): k for k, (row, label) in enumerate(pairs)}


def _lattice(rng: np.random.RandomState, data_size: int) -> tuple[np.ndarray, np.ndarray]:
    points = rng.choice(LATTICE_SIDE, 5 * data_size * 3 * 2).reshape(5 * data_size, 3, 2)
    target = points[:, 1] + points[:, 2] - points[:, 0]
    kept = np.flatnonzero(((target >= 0) & (target < LATTICE_SIDE)).all(axis=1))[:data_size]
    tokens = LATTICE_SIDE * points[kept, :, 0] + points[kept, :, 1]
    labels = LATTICE_SIDE * target[kept, 0] + target[kept, 1]
    return tokens.astype(np.int64), labels.astype(np.int64)
