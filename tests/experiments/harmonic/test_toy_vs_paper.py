from dataclasses import asdict

from harmono.experiments.harmonic.toy_paper import PAPER_TEST_EPOCHS, p_text, paper_comparison
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
    paper = PAPER_TEST_EPOCHS["equivalence"][3]
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
        f"| equivalence | harmonic transformer | 1617 (19/20) | 4851 (19/20) | {p_text(slower.epochs_p)}; 1 "
        "| 1617 (19/20) | 1; 1 |"
    )
    assert slower.epochs_p < 0.001
    assert _row(text, "permutation", "harmonic transformer") == (
        "| permutation | harmonic transformer | - (0/20) | pending | pending | pending | pending |"
    )
