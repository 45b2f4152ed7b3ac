import itertools

import numpy as np
import pytest

from harmono.data.toy import TASKS, split_task, toy_task

EXPECTED = {  # task -> (examples, input tokens, vocabulary)
    "lattice": (7225, 3, 25),
    "modadd": (961, 2, 31),
    "equivalence": (1600, 2, 42),
    "genealogy": (372, 2, 130),
    "permutation": (576, 2, 24),
}


def _brute_force_label(task: str, inputs: tuple[int, ...]) -> int | None:
    """Each task's rule, written from its definition and independently of the generator."""
    if task == "lattice":
        a, b, c = (divmod(t, 5) for t in inputs)
        d = (b[0] + c[0] - a[0], b[1] + c[1] - a[1])
        return 5 * d[0] + d[1] if all(0 <= v < 5 for v in d) else None
    if task == "modadd":
        return (inputs[0] + inputs[1]) % 31
    if task == "equivalence":
        return 40 if (inputs[0] - inputs[1]) % 5 == 0 else 41
    if task == "genealogy":
        parent = {child: node for node in range(1, 127) for child in (2 * node, 2 * node + 1) if child <= 126}
        node, relation = inputs
        if relation == 127:
            return parent.get(node)
        if relation == 128:
            return parent.get(parent.get(node))
        siblings = [c for c, p in parent.items() if p == parent.get(node) and c != node]
        return siblings[0] if siblings else None
    perms = list(itertools.permutations(range(4)))
    p, q = np.array(perms[inputs[0]]), np.array(perms[inputs[1]])
    return perms.index(tuple(p[q]))


def _all_inputs(task: str):
    if task == "lattice":
        return itertools.product(range(25), repeat=3)
    if task == "genealogy":
        return itertools.product(range(1, 127), (127, 128, 129))
    return itertools.product(range({"modadd": 31, "equivalence": 40, "permutation": 24}[task]), repeat=2)


@pytest.mark.parametrize("name", TASKS)
def test_task_is_every_example_of_its_definition(name):
    task = toy_task(name)
    n, t, v = EXPECTED[name]
    assert task.inputs.shape == (n, t) and task.labels.shape == (n,) and task.vocab_size == v
    assert task.inputs.dtype == np.int64 and task.labels.dtype == np.int64
    assert task.inputs.max() < v and task.labels.max() < v and task.inputs.min() >= 0
    brute = {}
    for inputs in _all_inputs(name):
        label = _brute_force_label(name, inputs)
        if label is not None:
            brute[inputs] = label
    made = {tuple(row): label for row, label in zip(task.inputs.tolist(), task.labels.tolist(), strict=True)}
    assert len(made) == n  # no example twice
    assert made == brute
    assert len(task.token_names) == v
    assert toy_task(name) is task and not task.inputs.flags.writeable  # built once, shared read-only
    assert all(0 <= t < v for t in task.analysed_tokens)


@pytest.mark.parametrize("name", TASKS)
def test_default_split_has_no_overlap_and_equal_sizes_across_seeds(name):
    task = toy_task(name)
    sizes = set()
    for seed in (0, 52, 105):
        split = split_task(task, 0.8, seed)
        train = set(map(tuple, split.train_inputs.tolist()))
        test = set(map(tuple, split.test_inputs.tolist()))
        assert not train & test
        assert len(train) == len(split.train_inputs)  # drawn without replacement
        assert split.leakage == 0.0
        sizes.add((len(split.train_labels), len(split.test_labels)))
    n = min(1000, EXPECTED[name][0])
    assert sizes == {(int(0.8 * n), n - int(0.8 * n))}


def test_split_labels_follow_inputs():
    task = toy_task("modadd")
    split = split_task(task, 0.5, 3)
    assert np.array_equal(split.train_labels, split.train_inputs.sum(1) % 31)
    assert np.array_equal(split.test_labels, split.test_inputs.sum(1) % 31)


def test_paper_sampling_leaks_and_reports_it():
    task = toy_task("genealogy")
    split = split_task(task, 0.8, 0, paper_sampling=True)
    assert (len(split.train_labels), len(split.test_labels)) == (800, 200)
    train = set(map(tuple, split.train_inputs.tolist()))
    leaked = np.mean([tuple(row) in train for row in split.test_inputs.tolist()])
    assert split.leakage == pytest.approx(leaked)
    assert split.leakage > 0.7  # 800 draws from 372 facts cover most of them


def test_paper_sampling_uses_every_permutation_pair_once():
    split = split_task(toy_task("permutation"), 0.8, 0, paper_sampling=True)
    rows = np.concatenate([split.train_inputs, split.test_inputs]).tolist()
    assert len(set(map(tuple, rows))) == len(rows) == 576
    assert split.leakage == 0.0


def test_split_is_seeded():
    task = toy_task("lattice")
    a, b, c = (split_task(task, 0.8, s) for s in (1, 1, 2))
    assert np.array_equal(a.train_inputs, b.train_inputs)
    assert not np.array_equal(a.train_inputs, c.train_inputs)


def test_bad_arguments():
    task = toy_task("modadd")
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\), got 1.0"):
        split_task(task, 1.0)
    with pytest.raises(ValueError, match="leaves an empty split"):
        split_task(task, 0.1, data_size=5)
    with pytest.raises(ValueError, match="data_size must be a positive int"):
        split_task(task, data_size=0)
    with pytest.raises(ValueError, match=r"task must be one of .*got 'xor'"):
        toy_task("xor")
