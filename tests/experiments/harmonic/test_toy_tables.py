"""Tables of committed toy results: the paper's layout, pending cells, markers in the docs."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from harmono.cli import main
from harmono.experiments.harmonic.toy_protocols import (
    MAIN_SETTING,
    SUITE_CONTROLS,
    is_official,
    protocol_label,
    training_label,
)
from harmono.experiments.harmonic.toy_suite import paper_configs
from harmono.experiments.harmonic.toy_tables import (
    EXPONENT_SWEEP,
    SECTION,
    efficiency_controls_markdown,
    efficiency_curves,
    efficiency_markdown,
    exponent_markdown,
    read_results,
    results_markdown,
    suite_controls_markdown,
)
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS
from harmono.report.marked_sections import markers, update_marked_section

MARK_BEGIN, MARK_END = markers(SECTION)


def _record(task, arch, head, ev, grokking, paper_sampling=False, **train_overrides):
    model, train = paper_configs(task, arch, head, paper_sampling=paper_sampling, **train_overrides)
    seeds = [
        {
            "seed": seed,
            "ev_top2": e,
            "train_epoch": a,
            "test_epoch": b,
            "final_train_acc": 1.0,
            "final_test_acc": 1.0,
        }  # fmt: skip
        for seed, e, (a, b) in zip(PAPER_SEEDS[: len(ev)], ev, grokking, strict=True)
    ]
    return {"task": task, "model": asdict(model), "train": asdict(train), "seeds": seeds}


def _with_accuracy(record, train_acc, test_acc):
    for seed, train, test in zip(record["seeds"], train_acc, test_acc, strict=True):
        seed["final_train_acc"], seed["final_test_acc"] = train, test
    return record


def _cells(markdown: str, title_word: str, task: str) -> list[str]:
    """The cells of ``task``'s row in the first table after the title containing ``title_word``."""
    table = markdown[markdown.index(title_word) :]
    row = next(line for line in table.splitlines() if line.startswith(f"| {task} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][1:]


def test_markdown_puts_each_result_in_its_sampling_and_model_cell_beside_the_paper():
    records = [
        # EV 10 x 0.4, 10 x 0.6 -> median 50 [40-60]; train epochs 10 x 10, 10 x 20 -> median 15;
        # test epochs 10 x 30, 9 x 40 and one never -> median 30, 19 of 20 seeds
        _record(
            "modadd",
            "mlp",
            "harmonic",
            [0.4] * 10 + [0.6] * 10,
            [(10, 30)] * 10 + [(20, 40)] * 9 + [(30, None)],
        ),
        _record("modadd", "mlp", "standard", [1.0] * 20, [(5, 5)] * 10 + [(7, 9)] * 10, paper_sampling=True),
        _record(
            "lattice", "mlp", "harmonic", [0.9] * 20, [(1, 1)] * 20, epochs=10
        ),  # not the official protocol
    ]
    text = results_markdown(records)
    leak_free_ev = _cells(text, "Top-2 PCA explained variance (%) of the embeddings, leak-free", "modadd")
    assert leak_free_ev == [
        "pending (45.5 [35-63])", "50 [40-60] (100 [51-100])",
        "pending (60.5 [38-80])", "pending (64 [30-96])",
    ]  # fmt: skip
    leak_free_grokking = _cells(text, "**Grokking, leak-free", "modadd")
    assert leak_free_grokking[1] == "15→30 (19/20) (308→309)"  # the paper's 307→308, counted from 1
    paper_ev = _cells(text, "Top-2 PCA explained variance (%) of the embeddings, the paper's", "modadd")
    assert paper_ev[0] == "100 [100-100] (45.5 [35-63])" and paper_ev[1].startswith("pending")
    assert _cells(text, "**Grokking, the paper's", "modadd")[0] == "6→7 (69→1033)"
    assert all(c.startswith("pending") for c in _cells(text, "leak-free", "lattice"))  # 10 epochs: not shown
    assert not is_official(records[2]) and is_official(records[0])


def test_tables_command_fills_the_markers_and_leaves_the_rest(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    record = _record("genealogy", "mlp", "harmonic", [0.5] * 10 + [0.51] * 10, [(98, 298), (90, 300)] * 10)
    (results / "genealogy-mlp-harmonic.json").write_text(json.dumps(record))
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nbefore\n{MARK_BEGIN}\nold table\n{MARK_END}\nafter\n")
    assert main(["toy", "tables", str(results), "--write", str(doc)]) == 0
    assert "updated" in capsys.readouterr().out
    content = doc.read_text()
    assert content.startswith("# Title\n\nbefore\n") and content.endswith(f"{MARK_END}\nafter\n")
    assert "old table" not in content and "50.5 [50-51] (51 [41-60])" in content
    assert not update_marked_section(doc, results_markdown(read_results(results)), SECTION)  # idempotent


def test_tables_refuse_bad_markers_and_bad_records(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"{MARK_END}\n{MARK_BEGIN}\n")
    with pytest.raises(ValueError, match=f"{doc}: expected one"):
        update_marked_section(doc, "x", SECTION)
    assert doc.read_text() == f"{MARK_END}\n{MARK_BEGIN}\n"
    (tmp_path / "broken.json").write_text('{"task": "modadd"}')
    with pytest.raises(ValueError, match="broken.json: not a toy result record"):
        read_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a folder of toy results"):
        read_results(tmp_path / "missing")


def _seeds(accuracies):
    return [
        {"seed": seed, "ev_top2": 1.0, "train_epoch": 10, "test_epoch": 12, "final_test_acc": acc}
        for seed, acc in zip(PAPER_SEEDS, accuracies, strict=False)
    ]


def test_exponent_table_lists_every_swept_configuration():
    record = _record("modadd", "mlp", "harmonic", [0.5] * 20, [(10, 12)] * 20, paper_sampling=True)
    record["model"]["exponent"] = 8.0
    record["seeds"] = _seeds([0.5, 0.7] * 10)
    text = exponent_markdown([record])
    row = next(line for line in text.splitlines() if line.startswith("| modadd | paper | 8 |"))
    assert row == "| modadd | paper | 8 | 100 [100-100] | 10→12 | 0.60 ± 0.10 |"
    assert text.count("pending") == 3 * (sum(2 * len(n) for n in EXPONENT_SWEEP.values()) - 1)
    assert "| permutation | leak-free | 4 | pending | pending | pending |" in text


def test_efficiency_table_and_figure_from_fraction_records(tmp_path):
    records = []
    for fraction, accuracies in ((0.3, [0.2, 0.4, 0.6]), (0.6, [1.0, 1.0, 1.0])):
        record = _record("lattice", "mlp", "harmonic", [0.5] * 3, [(1, 1)] * 3, train_fraction=fraction)
        record["seeds"] = _seeds(accuracies)
        records.append(record)
    records.append(_record("lattice", "mlp", "harmonic", [0.5] * 20, [(1, 1)] * 20))  # the 20-seed suite
    curves = efficiency_curves(records)
    fractions, accuracy = curves["lattice"]["harmonic MLP"]
    np.testing.assert_array_equal(fractions, [0.3, 0.6])
    assert accuracy.shape == (3, 2) and list(curves) == ["lattice"]
    row = next(
        line
        for line in efficiency_markdown(records).splitlines()
        if line.startswith("| lattice | harmonic MLP |")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (
        cells[2:]
        == ["pending", "pending", "0.40 ± 0.20", "pending", "pending", "1.00 ± 0.00"] + ["pending"] * 3
    )
    results = tmp_path / "results"
    results.mkdir()
    for k, record in enumerate(records):
        (results / f"r{k}.json").write_text(json.dumps(record))
    figure = tmp_path / "efficiency.png"
    assert main(["toy", "tables", str(results), "--figure", str(figure)]) == 0
    assert figure.stat().st_size > 0


def _efficiency_record(task, head, fraction, accuracies, exponent=2.0, **train_overrides):
    record = _record(task, "mlp", head, [0.5] * len(accuracies), [(1, 1)] * len(accuracies),
                     train_fraction=fraction, **train_overrides)  # fmt: skip
    record["model"]["exponent"] = exponent
    record["seeds"] = _seeds(accuracies)
    return record


def test_efficiency_controls_sit_beside_the_curves_they_test_and_stay_out_of_them(tmp_path):
    main_curve = [
        _efficiency_record("permutation", h, 0.5, [0.2, 1.0, 0.6]) for h in ("standard", "harmonic")
    ]
    exponent_control = _efficiency_record("permutation", "harmonic", 0.5, [1.0, 0.95, 0.5], exponent=4.0)
    many_seeds = _efficiency_record("modadd", "harmonic", 0.4, [1.0] * 16 + [0.0] * 4)
    for seed, epoch in zip(
        many_seeds["seeds"], [400] * 4 + [1000] * 4 + [1500] * 4 + [6000] * 4 + [None] * 4, strict=True
    ):
        seed["test_epoch"] = epoch
    records = [*main_curve, exponent_control, many_seeds]
    assert sorted(efficiency_curves(records)["permutation"]) == ["harmonic MLP", "standard MLP"]
    assert "modadd" not in efficiency_curves(records)  # the 20-seed control is not a 3-seed point
    text = efficiency_controls_markdown(records)
    assert text.split("\n\n") == [
        "| task | model | seeds | 0.4 |\n|---|---|---|---|\n"
        "| modadd | harmonic MLP | 20 | 0.80 ± 0.41 (16/20) |",
        "modadd, 20 seeds: how many had generalised (test accuracy > 0.9, 20 epochs in a row) by epoch "
        "500 / 1,000 / 2,000 / the end",
        "| task | model | seeds | 0.4 |\n|---|---|---|---|\n| modadd | harmonic MLP | 20 | 4 / 8 / 12 / 16 |",
        "| task | model | seeds | 0.5 |\n|---|---|---|---|\n"
        "| permutation | harmonic MLP | 3 | 0.60 ± 0.40 (1/3) |\n"
        "| permutation | harmonic MLP, n=4 | 3 | 0.82 ± 0.28 (2/3) |\n"
        "| permutation | standard MLP | 3 | 0.60 ± 0.40 (1/3) |\n",
    ]
    sweep = _record("modadd", "mlp", "harmonic", [0.5] * 20, [(1, 1)] * 20)  # the exponent sweep's n = 4
    sweep["model"]["exponent"] = 4.0
    assert efficiency_controls_markdown([*main_curve, sweep]) == "No control has run yet.\n"
    nested = tmp_path / "results" / "controls" / "modadd-20-seeds"
    nested.mkdir(parents=True)
    (nested / "modadd-mlp-harmonic-f0.4.json").write_text(json.dumps(many_seeds))
    (tmp_path / "results" / "modadd-mlp-harmonic-f0.4.json").write_text(json.dumps(main_curve[1]))
    assert len(read_results(tmp_path / "results")) == 2  # the control does not replace the main file


def test_a_control_setting_makes_its_own_efficiency_row_and_suite_runs_make_none():
    main_curve = _efficiency_record("modadd", "standard", 0.4, [0.3, 0.4, 0.5], paper_sampling=True)
    no_reg = _efficiency_record(
        "modadd", "standard", 0.4, [1.0] * 15 + [0.2] * 5, paper_sampling=True, embedding_reg="none"
    )
    unlisted = _efficiency_record("modadd", "standard", 0.4, [1.0] * 3, paper_sampling=True, lr=1e-3)
    more_seeds = _efficiency_record("modadd", "standard", 0.8, [0.5] * 20, paper_sampling=True)
    more_seeds["seeds"] = [{**s, "seed": 1001 + k} for k, s in enumerate(more_seeds["seeds"] * 2)]
    records = [main_curve, no_reg, unlisted, more_seeds]
    fractions, accuracy = efficiency_curves(records)["modadd"]["standard MLP, paper sampling"]
    np.testing.assert_array_equal(fractions, [0.4])  # neither the control nor the extra seeds
    np.testing.assert_allclose(accuracy[:, 0], [0.3, 0.4, 0.5])
    assert efficiency_controls_markdown(records) == (
        "| task | model | seeds | 0.4 |\n|---|---|---|---|\n"
        "| modadd | standard MLP, paper sampling | 3 | 0.40 ± 0.10 (0/3) |\n"
        "| modadd | standard MLP, paper sampling, no embedding regulariser | 20 | 0.80 ± 0.36 (15/20) |"
        "\n\nmodadd, 20 seeds: how many had generalised (test accuracy > 0.9, 20 epochs in a row) by epoch "
        "500 / 1,000 / 2,000 / the end\n\n"
        "| task | model | seeds | 0.4 |\n|---|---|---|---|\n"
        "| modadd | standard MLP, paper sampling, no embedding regulariser | 20 | 20 / 20 / 20 / 20 |\n"
    )


def test_suite_controls_sit_beneath_the_cell_they_test():
    permutation = [(600, 4000)] * 10 + [(700, None)] * 10
    main = _with_accuracy(
        _record("permutation", "transformer", "harmonic", [0.3] * 20, permutation), [1.0] * 20, [0.9] * 20
    )
    control = _with_accuracy(
        _record("permutation", "transformer", "harmonic", [0.3] * 20, [(800, None)] * 20, eval_dropout=True),
        [0.8] * 20, [0.6] * 10 + [0.8] * 10,
    )  # fmt: skip
    twin = {**control, "train": {**control["train"], "paper_sampling": True}}  # the same run: left out
    decay = _record(
        "permutation", "transformer", "harmonic", [0.3] * 20, [(300, 310)] * 20, weight_decay=0.01
    )
    no_reg = _record(
        "permutation", "transformer", "harmonic", [0.3] * 20, [(200, 220)] * 20, embedding_reg="none"
    )
    genealogy = _record("genealogy", "transformer", "standard", [0.3] * 20, [(50, 60)] * 20,
                        paper_sampling=True, eval_dropout=True)  # fmt: skip
    longer = _record("permutation", "mlp", "harmonic", [0.3] * 20, [(900, 950)] * 20, epochs=10_000)
    longer_noisy = _record("permutation", "mlp", "harmonic", [0.3] * 20, [(900, 8000)] * 20,
                           epochs=10_000, eval_dropout=True)  # fmt: skip
    paper_text = _record("permutation", "transformer", "harmonic", [0.3] * 20, [(700, 9000)] * 20,
                         epochs=10_000, eval_dropout=True, weight_decay=0.01)  # fmt: skip
    no_decay = _record("permutation", "transformer", "harmonic", [0.2] * 10 + [0.5] * 10, [(500, 500)] * 20,
                       weight_decay=0.0)  # fmt: skip
    not_controls = [
        _record(
            "lattice", "transformer", "standard", [0.3] * 20, [(5, 5)] * 20, epochs=10, eval_dropout=True
        ),
        _record("lattice", "transformer", "standard", [0.3] * 20, [(5, 5)] * 20, weight_decay=0.01, lr=1e-3),
        _record("lattice", "mlp", "standard", [0.3] * 20, [(5, 5)] * 20, weight_decay=0.01),  # the MLP's own
        _record("lattice", "transformer", "standard", [0.3] * 20, [(5, 5)] * 20, embedding_reg="l2"),
        _record("lattice", "transformer", "standard", [0.3] * 20, [(5, 5)] * 20, epochs=10_000,
                weight_decay=0.01),
    ]  # two settings changed that no control lists, none, or another value  # fmt: skip
    controls = [genealogy, decay, no_reg, main, control, twin, longer, longer_noisy, paper_text, no_decay]
    text = suite_controls_markdown([*controls, *not_controls])
    harmono = "harmono's default (the regulariser on, dropout off at evaluation)"
    assert text.splitlines()[2:] == [
        f"| genealogy | standard transformer, paper sampling | {harmono} | pending | pending | pending "
        "| pending | pending | 72→499 (18/20) |",
        "| genealogy | standard transformer, paper sampling | dropout on at evaluation (the official code) "
        "| 30 [30-30] | 50→60 | 1.00 ± 0.00 | 1.00 ± 0.00 | <0.001; 0.49 | 72→499 (18/20) |",
        f"| permutation | harmonic MLP | {harmono} | pending | pending | pending | pending | pending "
        "| 914→1050 (18/20) |",
        "| permutation | harmonic MLP | 10,000 epochs (the paper's text for transformers) | 30 [30-30] "
        "| 900→950 | 1.00 ± 0.00 | 1.00 ± 0.00 | 0.54; 0.49 | 914→1050 (18/20) |",
        "| permutation | harmonic MLP | dropout on at evaluation and 10,000 epochs | 30 [30-30] | 900→8000 "
        "| 1.00 ± 0.00 | 1.00 ± 0.00 | <0.001; 0.49 | 914→1050 (18/20) |",
        f"| permutation | harmonic transformer | {harmono} | 30 [30-30] | 650→4000 (10/20) | 1.00 ± 0.00 "
        "| 0.90 ± 0.00 | -; <0.001 | - (0/20) |",
        "| permutation | harmonic transformer | dropout on at evaluation (the official code) | 30 [30-30] "
        "| - (0/20) | 0.80 ± 0.00 | 0.70 ± 0.10 | -; 1 | - (0/20) |",
        "| permutation | harmonic transformer | no embedding regulariser | 30 [30-30] | 200→220 "
        "| 1.00 ± 0.00 | 1.00 ± 0.00 | -; <0.001 | - (0/20) |",
        "| permutation | harmonic transformer | no weight decay | 35 [20-50] | 500→500 | 1.00 ± 0.00 "
        "| 1.00 ± 0.00 | -; <0.001 | - (0/20) |",
        "| permutation | harmonic transformer | the paper's text (weight decay 0.01, 10,000 epochs), "
        "dropout on at evaluation | 30 [30-30] | 700→9000 | 1.00 ± 0.00 | 1.00 ± 0.00 | -; <0.001 "
        "| - (0/20) |",
        "| permutation | harmonic transformer | weight decay 0.01 (the paper's text) | 30 [30-30] | 300→310 "
        "| 1.00 ± 0.00 | 1.00 ± 0.00 | -; <0.001 | - (0/20) |",
    ]
    assert results_markdown([main, control, decay]) == results_markdown([main])  # controls are no main cells
    assert suite_controls_markdown([main, *not_controls]) == "No control has run yet.\n"


@pytest.mark.parametrize("arch", ["mlp", "transformer"])
def test_each_control_label_names_the_settings_it_changes(arch):
    def record(**settings):
        return _record("modadd", arch, "harmonic", [0.3] * 20, [(5, 5)] * 20, **settings)

    _, protocol = paper_configs("modadd", arch, "harmonic", paper_sampling=True)
    for overrides, label in SUITE_CONTROLS:
        if any(getattr(protocol, name) == value for name, value in overrides.items()):
            assert arch == "mlp" and overrides["weight_decay"] == 0.01  # the MLP's own: another row's
            continue
        assert protocol_label(record(paper_sampling=True, **overrides)) == label, overrides
    assert protocol_label(record()) == MAIN_SETTING
    assert protocol_label(record(paper_sampling=True, official_draws=True, lr=1e-3)) is None  # unlisted


def test_a_control_of_a_task_used_whole_shows_once_whichever_twin_ran():
    main = _record("permutation", "mlp", "standard", [0.3] * 20, [(100, 1200)] * 20)
    paper_twin = _record("permutation", "mlp", "standard", [0.4] * 20, [(100, 1700)] * 20,
                         paper_sampling=True, embedding_reg="none")  # fmt: skip
    leak_free_twin = dict(paper_twin, train={**paper_twin["train"], "paper_sampling": False})
    rows = suite_controls_markdown([main, paper_twin]).splitlines()[2:]
    assert [row.split(" | ")[1:4] for row in rows] == [
        ["standard MLP", "harmono's default (the regulariser on, dropout off at evaluation)", "30 [30-30]"],
        ["standard MLP", "no embedding regulariser", "40 [40-40]"],
    ]
    assert suite_controls_markdown([main, paper_twin, leak_free_twin]).splitlines()[2:] == rows


def test_a_suite_cell_is_the_official_fraction_point_of_its_20_seed_curve_only():
    twenty = _efficiency_record("permutation", "standard", 0.6, [0.2] * 20, embedding_reg="none")
    three = _efficiency_record("permutation", "harmonic", 0.6, [0.5] * 3, embedding_reg="none")
    suite = [
        _efficiency_record("permutation", head, 0.8, [1.0] * 10 + [0.8] * 10, embedding_reg="none")
        for head in ("standard", "harmonic")
    ]
    other_setting = _efficiency_record("permutation", "standard", 0.8, [0.0] * 20)  # regulariser on
    text = efficiency_controls_markdown([twenty, three, *suite, other_setting])
    assert text.split("\n\n")[0] == (
        "| task | model | seeds | 0.6 | 0.8 |\n|---|---|---|---|---|\n"
        "| permutation | harmonic MLP, no embedding regulariser | 3 | 0.50 ± 0.00 (0/3) | - |\n"
        "| permutation | standard MLP, no embedding regulariser | 20 | 0.20 ± 0.00 (0/20) "
        "| 0.90 ± 0.10 (10/20) |"
    )
    setting = training_label(twenty, own_fraction=True)
    curves = efficiency_curves([twenty, *suite], many_seeds=True, setting=setting)["permutation"]
    assert list(curves) == ["standard MLP"]
    np.testing.assert_array_equal(curves["standard MLP"][0], [0.6, 0.8])


def test_a_training_stored_twice_counts_once_from_the_top_folder(tmp_path):
    cell = _efficiency_record("permutation", "standard", 0.8, [1.0] * 20)
    again = json.loads(json.dumps(cell))
    again["seeds"][0]["final_test_acc"] = 0.0  # the rerun's float noise, exaggerated
    other_seeds = json.loads(json.dumps(cell))
    other_seeds["seeds"] = [{**s, "seed": 1001 + k} for k, s in enumerate(cell["seeds"])]
    efficiency = tmp_path / "a-controls" / "efficiency"
    efficiency.mkdir(parents=True)
    (efficiency / "permutation-mlp-standard-f0.8.json").write_text(json.dumps(again))
    (tmp_path / "a-controls" / "more-seeds.json").write_text(json.dumps(other_seeds))
    (tmp_path / "permutation-mlp-standard.json").write_text(json.dumps(cell))
    records = read_results(tmp_path)
    assert len(records) == 2 and records[0] == cell and records[1] == other_seeds
