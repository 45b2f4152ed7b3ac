"""The harmonic-loss paper's five algorithmic tasks, and how to split them.

Every task is the complete set of its unique examples: ``inputs (N, T)``
token ids and ``labels (N,)`` token ids, over one vocabulary shared by inputs
and outputs (the models tie the input embedding to the output layer).

- ``lattice`` (in-context learning): points of a 5x5 lattice, token
  ``5 i + j`` for ``(i, j)``; given ``a, b, c`` predict ``d = b + c - a``,
  kept when ``d`` lies on the lattice. 7,225 examples, vocabulary 25.
- ``modadd``: ``(x, y) -> (x + y) mod 31``. 961 examples, vocabulary 31.
- ``equivalence``: ``x, y`` in ``0..39``; label token 40 when
  ``x = y (mod 5)``, else 41. 1,600 examples, vocabulary 42.
- ``genealogy``: the complete binary tree on nodes 1..126 (children of ``i``
  are ``2i`` and ``2i + 1``); ``(subject, relation) -> object`` for the
  relations parent (token 127), grandparent (128) and sibling (129), wherever
  the object exists. 372 facts, vocabulary 130 (token 0 is unused).
- ``permutation``: all pairs of the 24 permutations of ``{0, 1, 2, 3}``
  (token = index in lexicographic order); the label is the composition
  ``(p o q)(i) = p[q[i]]``. 576 examples, vocabulary 24.

Splits
------
:func:`split_task` draws ``data_size`` examples and cuts them into train and
test by ``train_fraction``. By default the examples are drawn *without*
replacement from the unique ones, so no example is in both splits. With
``paper_sampling=True`` they are drawn *with* replacement, as the official
code does (except for ``permutation``, which it always uses whole); the same
example then lands in both splits, and :attr:`ToySplit.leakage` reports the
share of test examples that also occur in training.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from harmono.core import checks

TASKS = ("lattice", "modadd", "equivalence", "genealogy", "permutation")
WHOLE_TASKS = ("permutation",)
"""Tasks the official code always uses whole, each example once: the sampling changes nothing."""
PAPER_DATA_SIZE = 1000
"""Examples the official code draws per task (all 576 for ``permutation``)."""

LATTICE_SIDE = 5
MODULUS = 31
EQUIVALENCE_RANGE, EQUIVALENCE_MODULUS = 40, 5
TREE_NODES = 126
RELATIONS = ("parent", "grandparent", "sibling")
PERMUTATION_SIZE = 4


@dataclass(frozen=True)
class ToyTask:
    """All unique examples of one algorithmic task."""

    name: str
    """One of ``TASKS``."""
    inputs: np.ndarray
    """``(N, T)`` int64 input token ids."""
    labels: np.ndarray
    """``(N,)`` int64 target token ids."""
    vocab_size: int
    """``V``: size of the shared input/output vocabulary."""
    token_names: tuple[str, ...]
    """A short name per token id, for plots (``""`` for unused ids)."""
    analysed_tokens: tuple[int, ...]
    """Token ids whose embedding rows the EV metric and the PCA plots use."""

    @property
    def seq_len(self) -> int:
        """``T``, the number of input tokens per example."""
        return self.inputs.shape[1]


@dataclass(frozen=True)
class ToySplit:
    """Train and test examples of one task for one seed."""

    train_inputs: np.ndarray
    """``(N_train, T)`` int64."""
    train_labels: np.ndarray
    """``(N_train,)`` int64."""
    test_inputs: np.ndarray
    """``(N_test, T)`` int64."""
    test_labels: np.ndarray
    """``(N_test,)`` int64."""
    leakage: float
    """Share of test examples (with their label) that also occur in the training set."""
    train_ids: np.ndarray
    """``(N_train,)`` int64: row of each training example in the task's ``inputs``/``labels``."""
    test_ids: np.ndarray
    """``(N_test,)`` int64: row of each test example in the task's ``inputs``/``labels``."""


def _lattice() -> ToyTask:
    side = LATTICE_SIDE
    points = [(i, j) for i in range(side) for j in range(side)]
    inputs, labels = [], []
    for a, b, c in itertools.product(range(side * side), repeat=3):
        (ai, aj), (bi, bj), (ci, cj) = points[a], points[b], points[c]
        di, dj = bi + ci - ai, bj + cj - aj
        if 0 <= di < side and 0 <= dj < side:
            inputs.append((a, b, c))
            labels.append(side * di + dj)
    names = tuple(f"{i},{j}" for i, j in points)
    return ToyTask("lattice", _ids(inputs), _ids(labels), side * side, names, tuple(range(side * side)))


def _modadd() -> ToyTask:
    p = MODULUS
    inputs = list(itertools.product(range(p), repeat=2))
    labels = [(x + y) % p for x, y in inputs]
    return ToyTask("modadd", _ids(inputs), _ids(labels), p, tuple(map(str, range(p))), tuple(range(p)))


def _equivalence() -> ToyTask:
    n, m = EQUIVALENCE_RANGE, EQUIVALENCE_MODULUS
    inputs = list(itertools.product(range(n), repeat=2))
    labels = [n if x % m == y % m else n + 1 for x, y in inputs]
    names = (*map(str, range(n)), "same", "differ")
    return ToyTask("equivalence", _ids(inputs), _ids(labels), n + 2, names, tuple(range(n)))


def _genealogy() -> ToyTask:
    last = TREE_NODES
    relation_token = {name: last + 1 + k for k, name in enumerate(RELATIONS)}
    inputs, labels = [], []
    for node in range(2, last + 1):
        objects = {"parent": node // 2, "grandparent": node // 4, "sibling": node ^ 1}
        for name in RELATIONS:
            target = objects[name]
            if 1 <= target <= last:
                inputs.append((node, relation_token[name]))
                labels.append(target)
    names = ("", *map(str, range(1, last + 1)), *RELATIONS)
    return ToyTask(
        "genealogy", _ids(inputs), _ids(labels), last + 1 + len(RELATIONS), names, tuple(range(1, last + 1))
    )


def _permutation() -> ToyTask:
    perms = list(itertools.permutations(range(PERMUTATION_SIZE)))
    index = {perm: k for k, perm in enumerate(perms)}
    inputs, labels = [], []
    for a, b in itertools.product(range(len(perms)), repeat=2):
        p, q = perms[a], perms[b]
        inputs.append((a, b))
        labels.append(index[tuple(p[q[i]] for i in range(PERMUTATION_SIZE))])
    names = tuple("".join(map(str, perm)) for perm in perms)
    return ToyTask("permutation", _ids(inputs), _ids(labels), len(perms), names, tuple(range(len(perms))))


def _ids(values: list) -> np.ndarray:
    ids = np.asarray(values, dtype=np.int64)
    ids.setflags(write=False)  # shared by every caller of the cached ``toy_task``
    return ids


_BUILDERS = {
    "lattice": _lattice,
    "modadd": _modadd,
    "equivalence": _equivalence,
    "genealogy": _genealogy,
    "permutation": _permutation,
}


@functools.cache
def toy_task(name: str) -> ToyTask:
    """All unique examples of the task ``name`` (one of ``TASKS``); built once, arrays read-only."""
    return _BUILDERS[checks.require_choice("task", name, TASKS)]()


def leakage(
    train_inputs: np.ndarray, train_labels: np.ndarray, test_inputs: np.ndarray, test_labels: np.ndarray
) -> float:
    """Share of test examples (inputs ``(N, T)`` with their label ``(N,)``) that also occur in training."""
    seen = {(*row, label) for row, label in zip(train_inputs.tolist(), train_labels.tolist(), strict=True)}
    pairs = zip(test_inputs.tolist(), test_labels.tolist(), strict=True)
    return sum((*row, label) in seen for row, label in pairs) / len(test_labels)


def split_task(
    task: ToyTask,
    train_fraction: float = 0.8,
    seed: int = 0,
    *,
    data_size: int = PAPER_DATA_SIZE,
    paper_sampling: bool = False,
) -> ToySplit:
    """Draw ``data_size`` examples of ``task`` and split them into train and test.

    Parameters
    ----------
    task : ToyTask
        From :func:`toy_task`.
    train_fraction : float
        In ``(0, 1)``; the first ``floor(train_fraction * n)`` drawn examples
        train, the rest test (``n`` drawn examples, at least one in each).
    seed : int
        Seeds the draw (numpy ``default_rng``).
    data_size : int
        Examples to draw. Without ``paper_sampling`` at most the number of
        unique examples are drawn (all of them for ``genealogy`` and
        ``permutation`` at the default 1000).
    paper_sampling : bool
        Draw with replacement, as the official code does (``permutation``:
        every example once, as there). Test examples then repeat training
        examples; see :attr:`ToySplit.leakage`.

    Returns
    -------
    ToySplit
        The same sizes for every seed, so that seeds can train together.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    data_size = checks.require_positive_int("data_size", data_size)
    rng = np.random.default_rng(seed)
    unique = len(task.labels)
    if paper_sampling and task.name not in WHOLE_TASKS:
        chosen = rng.integers(0, unique, size=data_size)
    else:
        chosen = rng.permutation(unique)[: min(data_size, unique)]
    n = len(chosen)
    n_train = int(train_fraction * n)
    if not 0 < n_train < n:
        raise ValueError(
            f"train_fraction {train_fraction} of {n} examples leaves an empty split; "
            "expected at least one training and one test example"
        )
    train, test = chosen[:n_train], chosen[n_train:]
    return ToySplit(
        task.inputs[train],
        task.labels[train],
        task.inputs[test],
        task.labels[test],
        leakage(task.inputs[train], task.labels[train], task.inputs[test], task.labels[test]),
        train.astype(np.int64),
        test.astype(np.int64),
    )


def token_classes(task: ToyTask) -> np.ndarray:
    """The class of each analysed token, for tasks whose inputs fall into classes: ``(len(analysed),)``.

    ``equivalence``: the residue of the number mod 5. Other tasks have none
    (a ``ValueError`` says so).
    """
    if task.name != "equivalence":
        raise ValueError(f"task {task.name!r} has no token classes; only 'equivalence' has (numbers mod 5)")
    return np.asarray(task.analysed_tokens) % EQUIVALENCE_MODULUS
