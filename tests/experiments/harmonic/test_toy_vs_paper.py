from dataclasses import asdict

import numpy as np

from harmono.experiments.harmonic.toy_paper import (
    PAPER_TEST_EPOCHS,
    p_text,
    paper_comparison,
    paper_test_epochs,
)
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS
from harmono.experiments.harmonic.toy_vs_paper import vs_paper_markdown


def _record(task, arch, head, test_epochs, paper_sampling=False, **train_overrides):
    model, train = paper_configs(task, arch, head, paper_sampling=paper_sampling, **train_overrides)
    seeds = [{"seed": s, "test_epoch": e} for s, e in zip(PAPER_SEEDS, test_epochs, strict=True)]
    return {"task": task, "model": asdict(model), "train": asdict(train), "seeds": seeds}


def _row(markdown, task, model):
    return next(line for line in markdown.splitlines() if line.startswith(f"| {task} | {model} |"))


def test_each_cell_sits_beside_the_paper_with_its_tests_and_the_rest_is_pending():
    paper = paper_test_epochs("equivalence", "transformer", "harmonic")  # counted from 1, as harmono's
    slow = [3 * e for e in paper] + [None]
    copy = list(paper) + [None]
    records = [
        _record("equivalence", "transformer", "harmonic", slow),
        _record("equivalence", "transformer", "harmonic", copy, paper_sampling=True),
        _record("equivalence", "transformer", "harmonic", copy, weight_decay=0.01),  # a control: left out
    ]
    text = vs_paper_markdown(records)
    assert text.splitlines()[0] == (
        "| task | model | the paper | harmono, leak-free | p | harmono, paper sampling | p |"
    )
    assert len(text.splitlines()) == 2 + 5 * 4
    slower = paper_comparison("equivalence", "transformer", "harmonic", records[0]["seeds"])
    assert _row(text, "equivalence", "harmonic transformer") == (
        f"| equivalence | harmonic transformer | 1618 (19/20) | 4854 (19/20) | {p_text(slower.epochs_p)}; 1 "
        "| 1618 (19/20) | 1; 1 |"
    )
    assert slower.epochs_p < 0.001
    assert _row(text, "permutation", "harmonic transformer") == (
        "| permutation | harmonic transformer | - (0/20) | pending | pending | pending | pending |"
    )


def test_other_seeds_are_tested_alone_and_pooled_with_the_twenty_of_their_setting():
    paper = PAPER_TEST_EPOCHS["equivalence"][3]
    twenty = _record("equivalence", "transformer", "harmonic", [2 * e for e in paper] + [None],
                     paper_sampling=True, weight_decay=0.01, eval_dropout=True, epochs=10_000)  # fmt: skip
    more = dict(twenty, seeds=[{"seed": 2000 + k, "test_epoch": e} for k, e in enumerate(paper[:10])])
    subset = dict(twenty, seeds=twenty["seeds"][:3])  # the paper's first seeds again: not more seeds
    odd = dict(more, train={**more["train"], "lr": 0.1})  # a setting no control lists
    text = vs_paper_markdown([twenty, more, subset, odd])
    block = text[text.index("**More seeds**") :].splitlines()
    setting = "the paper's text (weight decay 0.01, 10,000 epochs), dropout on at evaluation"
    model = "harmonic transformer, paper sampling"
    alone = paper_comparison("equivalence", "transformer", "harmonic", more["seeds"])
    pooled = paper_comparison("equivalence", "transformer", "harmonic", twenty["seeds"] + more["seeds"])
    median = np.median([2 * e for e in paper] + list(paper[:10]))
    assert block[4:] == [
        f"| equivalence | {model} | {setting} | 10 others (2000-2009) | {np.median(paper[:10]):.0f} (10/10) "
        f"| {p_text(alone.epochs_p)}; {p_text(alone.reached_p)} |",
        f"| equivalence | {model} | {setting} | with the paper's 20 (30) | {median:.0f} (29/30) "
        f"| {p_text(pooled.epochs_p)}; {p_text(pooled.reached_p)} |",
    ]
    assert alone.epochs_p > 0.05 > pooled.epochs_p  # the paper's own epochs, then twice as slow mixed in
    assert "**More seeds**" not in vs_paper_markdown([twenty, subset, odd])
