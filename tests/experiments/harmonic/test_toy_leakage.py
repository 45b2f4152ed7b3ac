"""The leakage tables: the paper's splits against harmono's, and the genealogy seeds by leakage band."""

from dataclasses import asdict

import numpy as np
import pytest

from harmono.data.official_toy_draws import official_split
from harmono.data.toy import split_task, toy_task
from harmono.experiments.harmonic.toy_leakage import (
    LEAKY_TASKS,
    expected_leakage,
    genealogy_band_rows,
    leakage_markdown,
    split_leakage_rows,
)
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS


def _genealogy_record(head, seeds, **train_overrides):
    """A record of the genealogy MLP with the paper's sampling: ``seeds`` as (seed, leakage, test epoch)."""
    model, train = paper_configs("genealogy", "mlp", head, paper_sampling=True, **train_overrides)
    rows = [{"seed": s, "leakage": leak, "test_epoch": epoch} for s, leak, epoch in seeds]
    return {"task": "genealogy", "model": asdict(model), "train": asdict(train), "seeds": rows}


def _band_row(rows, model, band):
    return next(row for row in rows if row[:2] == [model, band])


@pytest.mark.parametrize("task", ["modadd", "genealogy"])
def test_the_law_s_mean_is_the_mean_over_many_splits(task):
    leakages = np.array(
        [split_task(toy_task(task), 0.8, seed, paper_sampling=True).leakage for seed in range(150)]
    )
    assert abs(leakages.mean() - expected_leakage(task)) < 4 * leakages.std(ddof=1) / np.sqrt(len(leakages))


def test_split_table_sets_the_paper_s_splits_beside_harmono_s():
    rows = split_leakage_rows()
    assert [row[0] for row in rows] == list(LEAKY_TASKS) == ["lattice", "modadd", "equivalence", "genealogy"]
    genealogy = rows[-1]
    paper = [official_split("genealogy", seed).leakage for seed in PAPER_SEEDS]
    assert genealogy[1] == f"{100 * np.median(paper):.1f} [{100 * min(paper):.1f}-{100 * max(paper):.1f}]"
    assert genealogy[3] == "88.3"  # 1 - (372/373)^800


def test_genealogy_bands_count_each_seed_once_and_only_the_default_setting():
    main = _genealogy_record("standard", [(1, 0.80, 700), (2, 0.88, 60), (3, 0.95, 40), (4, 0.86, None)])
    more = _genealogy_record("standard", [(3, 0.95, 40), (5, 0.90, 50)])  # seed 3 again: the same model
    control = _genealogy_record("standard", [(6, 0.95, 9)], embedding_reg="none")  # another setting
    rows = genealogy_band_rows([main, more, control])
    assert _band_row(rows, "standard MLP", "< 87%")[2:5] == ["2", "1", "700"]
    assert _band_row(rows, "standard MLP", "87%-89%")[2:5] == ["1", "1", "60"]
    assert _band_row(rows, "standard MLP", ">= 89%")[2:5] == ["2", "2", "45"]
    assert _band_row(rows, "harmonic MLP", "< 87%")[2:5] == ["0", "0", "-"]
    paper_bands = [row[5] for row in rows[:3]]
    leakages = [official_split("genealogy", seed).leakage for seed in PAPER_SEEDS]
    expected = [sum(x < 0.87 for x in leakages), sum(0.87 <= x < 0.89 for x in leakages)]
    assert paper_bands == [str(n) for n in [*expected, len(leakages) - sum(expected)]]


def test_markdown_holds_both_tables():
    markdown = leakage_markdown([])
    assert sum(line.startswith("|---|") for line in markdown.splitlines()) == 2
    assert "| genealogy |" in markdown and "| standard MLP | >= 89% | 0 | 0 | - |" in markdown
