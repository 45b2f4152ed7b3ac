import re

import numpy as np

from harmono.experiments.harmonic.toy_paper import (
    PAPER_GROKKING,
    PAPER_GROKKING_AS_PUBLISHED,
    PAPER_TEST_EPOCHS,
    p_text,
    paper_comparison,
    paper_median_epoch,
    paper_test_epochs,
)
from harmono.experiments.harmonic.toy_suite import SUITE_ORDER


def test_the_paper_grokking_cells_agree_with_its_per_seed_test_epochs():
    """Two transcriptions, the figure's summary and the notebook's lists: the same medians and counts."""
    for task, cells in PAPER_GROKKING_AS_PUBLISHED.items():
        for k, cell in enumerate(cells):
            epochs = PAPER_TEST_EPOCHS[task][k]
            count = re.search(r"\((\d+)/20\)", cell)
            assert len(epochs) == (int(count.group(1)) if count else 20), (task, k)
            if epochs:
                assert re.search(r"(?:→|test )(\d+)", cell).group(1) == f"{np.median(epochs):.0f}", cell


def test_the_tables_count_the_paper_s_epochs_from_one_as_harmono_does():
    # the official code's epoch 0 is the accuracy after the first epoch, which harmono calls epoch 1
    assert PAPER_GROKKING["genealogy"] == ("27→243 (18/20)", "99→299", "72→499 (18/20)", "test 3125 (5/20)")
    assert PAPER_GROKKING["permutation"][3] == "- (0/20)"
    for task, cells in PAPER_GROKKING.items():
        for (arch, head), cell, published in zip(
            SUITE_ORDER, cells, PAPER_GROKKING_AS_PUBLISHED[task], strict=True
        ):
            epochs = paper_test_epochs(task, arch, head)
            assert list(epochs) == [e + 1 for e in PAPER_TEST_EPOCHS[task][SUITE_ORDER.index((arch, head))]]
            shifted = [int(n) + 1 for n in re.findall(r"\d+(?=→)|(?<=→)\d+|(?<=test )\d+", published)]
            assert [int(n) for n in re.findall(r"\d+(?=→)|(?<=→)\d+|(?<=test )\d+", cell)] == shifted
            # the median of the per-seed epochs, rounded as the paper rounds, is the cell's test epoch
            assert paper_median_epoch(epochs) == (shifted[-1] if shifted else None)


def test_the_paper_s_medians_round_halves_up():
    assert paper_median_epoch([9, 10]) == 10
    assert paper_median_epoch([10, 11]) == 11  # numpy's "{:.0f}" would give 10 (half to even)
    assert paper_median_epoch([3, 5, 100]) == 5
    assert paper_median_epoch([]) is None


def test_the_paper_against_itself_is_no_difference_and_a_slower_copy_is():
    task, arch, head = "equivalence", "transformer", "harmonic"
    paper = paper_test_epochs(task, arch, head)
    seeds = [{"test_epoch": e} for e in paper] + [{"test_epoch": None}]
    same = paper_comparison(task, arch, head, seeds)
    assert same == (19, 20, 19, 1.0, 1.0) and same.p_cell == "1; 1"
    slower = paper_comparison(
        task, arch, head, [{"test_epoch": 3 * e} for e in paper] + [{"test_epoch": None}]
    )
    assert slower.epochs_p < 1e-3 and slower.reached_p == 1.0
    fewer = paper_comparison(task, arch, head, seeds[:5] + [{"test_epoch": None}] * 15)
    assert fewer.reached_p < 1e-4 and fewer.epochs_p > 0.05  # 5 of 20 against 19 of 20, alike epochs


def test_no_seed_that_got_there_leaves_no_epoch_test_but_counts_the_seeds():
    result = paper_comparison("permutation", "transformer", "harmonic", [{"test_epoch": 900}] * 14)
    assert result.epochs_p is None and result.paper_reached == 0
    assert result.reached_p < 1e-6  # 14 of 14 against 0 of 20
    assert paper_comparison("modadd", "mlp", "harmonic", [{"test_epoch": None}] * 3).epochs_p is None


def test_p_text():
    assert [p_text(p) for p in (None, 0.0004, 0.0294, 0.66, 1.0)] == ["-", "<0.001", "0.029", "0.66", "1"]
