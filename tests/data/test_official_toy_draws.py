import math

import numpy as np
import pytest

from harmono.data.official_toy_draws import (
    OFFICIAL_GENEALOGY_EXTRA,
    official_examples,
    official_facts,
    official_split,
    official_task,
    official_toy_split,
)
from harmono.data.toy import toy_task

# The reference's leakage of the official splits of seeds 0, 52, 66 and 105 (min-max, %), made by running
# the official repository's own sampling code, not this module.
REFERENCE_LEAKAGE = {"lattice": (6, 13), "modadd": (49, 64), "equivalence": (38, 44), "genealogy": (77, 90)}
UNIQUE_EXAMPLES = {"lattice": 7225, "modadd": 961, "equivalence": 1600, "genealogy": 373}


@pytest.mark.parametrize("task", sorted(REFERENCE_LEAKAGE))
def test_leakage_of_the_seeds_the_reference_measured(task):
    percents = [math.floor(100 * official_split(task, seed).leakage + 0.5) for seed in (0, 52, 66, 105)]
    assert (min(percents), max(percents)) == REFERENCE_LEAKAGE[task]


def _global_legacy_split(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The official code's modular-addition draw, in its idiom: the global generator and a meshgrid."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        xx, yy = np.meshgrid(np.arange(31), np.arange(31))
        pairs = np.transpose([xx.reshape(-1), yy.reshape(-1)])
        drawn = pairs[np.random.choice(len(pairs), size=1000, replace=True)]
        np.random.seed(seed)
        train = np.random.choice(1000, 800, replace=False)
    finally:
        np.random.set_state(saved)
    return drawn[train], drawn[np.setdiff1d(np.arange(1000), train)]


@pytest.mark.parametrize("seed", [0, 421, 1000])
def test_modular_addition_replays_the_global_generator_the_official_code_seeds(seed):
    train, test = _global_legacy_split(seed)
    split = official_split("modadd", seed)
    np.testing.assert_array_equal(split.train_inputs, train)
    np.testing.assert_array_equal(split.test_inputs, test)
    np.testing.assert_array_equal(split.train_labels, train.sum(axis=1) % 31)


@pytest.mark.parametrize("task", ["lattice", "modadd", "equivalence", "genealogy", "permutation"])
def test_every_drawn_example_is_an_example_of_the_task(task):
    harmono = toy_task(task)
    known = {
        (*row, label) for row, label in zip(harmono.inputs.tolist(), harmono.labels.tolist(), strict=True)
    }
    inputs, labels = official_examples(task, 7)
    drawn = [(*row, label) for row, label in zip(inputs.tolist(), labels.tolist(), strict=True)]
    extra = (*OFFICIAL_GENEALOGY_EXTRA[0], OFFICIAL_GENEALOGY_EXTRA[1])
    assert {example for example in drawn if example not in known} <= (
        {extra} if task == "genealogy" else set()
    )
    assert len(drawn) == (576 if task == "permutation" else 1000)


def test_the_official_genealogy_has_one_fact_more_node_126s_sibling():
    inputs, labels = official_facts("genealogy")
    genealogy = toy_task("genealogy")
    assert len(labels) == 373
    np.testing.assert_array_equal(inputs[:372], genealogy.inputs)
    np.testing.assert_array_equal(labels[:372], genealogy.labels)
    assert (tuple(inputs[372]), labels[372]) == ((126, 129), 127)  # 127 is the parent relation's token


@pytest.mark.parametrize("task", sorted(UNIQUE_EXAMPLES))
def test_mean_leakage_follows_from_drawing_with_replacement(task):
    # a test example leaks when its example is among the 800 training draws: 1 - (1 - 1/U)^800
    leakages = np.array([official_split(task, seed).leakage for seed in range(120)])
    expected = 1 - (1 - 1 / UNIQUE_EXAMPLES[task]) ** 800
    assert abs(leakages.mean() - expected) < 4 * leakages.std(ddof=1) / np.sqrt(len(leakages))


def test_split_sizes_and_the_permutation_group_used_whole():
    split = official_split("permutation", 3)
    assert (len(split.train_labels), len(split.test_labels)) == (460, 116)
    rows = np.concatenate([split.train_inputs, split.test_inputs]).tolist()
    assert len(set(map(tuple, rows))) == 576
    assert split.leakage == 0.0
    assert official_split("modadd", 3, train_fraction=0.3).train_labels.shape == (300,)
    assert official_split("lattice", 3, data_size=50).test_inputs.shape == (10, 3)


def test_a_split_to_train_on_indexes_the_official_task():
    task = official_task("genealogy")
    split = official_toy_split("genealogy", 0)
    np.testing.assert_array_equal(task.inputs[split.train_ids], split.train_inputs)
    np.testing.assert_array_equal(task.labels[split.test_ids], split.test_labels)
    assert 372 in split.train_ids  # seed 0 draws the extra fact into training
    assert split.leakage == official_split("genealogy", 0).leakage
    modadd = official_toy_split("modadd", 5)
    assert official_task("modadd") is toy_task("modadd")
    np.testing.assert_array_equal(toy_task("modadd").inputs[modadd.test_ids], modadd.test_inputs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="task"):
        official_split("modular", 0)
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\), got 1.0"):
        official_split("modadd", 0, train_fraction=1.0)
    with pytest.raises(ValueError, match="data_size"):
        official_examples("modadd", 0, data_size=0)
    with pytest.raises(ValueError, match="'lattice' is not drawn from a list of facts"):
        official_facts("lattice")
