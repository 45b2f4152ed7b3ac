"""Committed MNIST records and the table made from them: round trip, hand-made records, bad files."""

import argparse
import json

import numpy as np
import pytest

from harmono.cli.mnist import add_mnist_command
from harmono.experiments.harmonic.mnist_linear import RESULTS_FILE
from harmono.experiments.harmonic.mnist_summary import SECTION, save_record, summary_rows
from harmono.report.marked_sections import markers
from harmono.report.text_table import format_table


def summary_markdown(sources):
    return format_table(*summary_rows(sources), markdown=True)


def _run_dir(folder, dataset="fashion-mnist", accuracies=None, seconds=175.2):
    """A finished run directory whose ``results.json`` follows the layout ``run_mnist_linear`` documents."""
    accuracies = accuracies or {
        "cross_entropy": [0.8441, 0.8456, 0.8432],
        "harmonic": [0.8370, 0.8362, 0.8381],
    }
    record = {
        "config": {"dataset": dataset, "epochs": 10, "seeds": len(accuracies["harmonic"])},
        "dataset": {"name": dataset, "train_size": 60000, "test_size": 10000, "class_names": ["a"] * 10},
        "seeds": list(range(len(accuracies["harmonic"]))),
        "seconds": seconds,
        "heads": {head: {"test_accuracy": values, "train_loss": [0.4] * len(values)}
                  for head, values in accuracies.items()},
    }  # fmt: skip
    folder.mkdir(parents=True)
    (folder / RESULTS_FILE).write_text(json.dumps(record))
    return folder


def _cell(values):
    mean, std = np.mean(values, dtype=np.float64), np.std(values, ddof=1, dtype=np.float64)
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def test_a_saved_record_gives_the_table_of_the_run(tmp_path):
    run = _run_dir(tmp_path / "fmnist")
    saved = save_record(run, tmp_path / "results")
    assert saved == tmp_path / "results" / "fashion-mnist.json"
    record = json.loads(saved.read_text())
    assert record["provenance"]["taken_at_export"] is True  # the hand-made run saved none
    assert record["heads"] == json.loads((run / RESULTS_FILE).read_text())["heads"]

    table = summary_markdown([saved])
    row = next(line for line in table.splitlines() if line.startswith("| Fashion-MNIST"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == ["60,000 / 10,000", "3", "10"]
    assert cells[4] == _cell([0.8441, 0.8456, 0.8432])
    assert cells[5] == _cell([0.8370, 0.8362, 0.8381])
    assert cells[6] == "84.12% vs 84.60% (community PR, about 90 epochs)"
    assert cells[7] == "175"
    assert summary_markdown([run]) == table  # a run directory reads as its record


def test_one_seed_shows_the_accuracy_alone(tmp_path):
    run = _run_dir(
        tmp_path / "one", dataset="mnist", accuracies={"cross_entropy": [0.9], "harmonic": [0.8925]}
    )
    row = next(line for line in summary_markdown([run]).splitlines() if line.startswith("| MNIST"))
    assert [cell.strip() for cell in row.strip("|").split("|")][4:6] == ["90.00%", "89.25%"]


def test_a_record_without_a_head_or_with_a_short_list_names_the_file_and_field(tmp_path):
    run = _run_dir(tmp_path / "r")
    record = json.loads((run / RESULTS_FILE).read_text())
    del record["heads"]["harmonic"]
    (run / RESULTS_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"{run / RESULTS_FILE}.*heads\.harmonic\.test_accuracy"):
        summary_markdown([run])
    record["heads"]["harmonic"] = {"test_accuracy": [0.8]}
    (run / RESULTS_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"one accuracy per seed \(3\), got \[0\.8\]"):
        summary_markdown([run])
    for seeds in ([], 5):
        (run / RESULTS_FILE).write_text(json.dumps({**record, "seeds": seeds}))
        with pytest.raises(ValueError, match=rf"{run / RESULTS_FILE}: expected seeds to list at least one"):
            summary_markdown([run])


def test_a_truncated_record_and_a_second_record_of_one_dataset_are_refused(tmp_path):
    saved = save_record(_run_dir(tmp_path / "a"), tmp_path / "results")
    other = _run_dir(tmp_path / "b")
    with pytest.raises(ValueError, match="a second record of 'fashion-mnist'"):
        summary_markdown([saved, other])
    saved.write_text(saved.read_text()[:100])
    with pytest.raises(ValueError, match=str(saved)):
        summary_markdown([saved])


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_mnist_command(parser.add_subparsers())
    return parser.parse_args(["mnist", *argv])


def test_summary_fills_the_marked_section_of_a_file(tmp_path, capsys):
    saved = save_record(_run_dir(tmp_path / "a"), tmp_path / "results")
    begin, end = markers(SECTION)
    doc = tmp_path / "guide.md"
    doc.write_text(f"before\n{begin}\nold table\n{end}\nafter\n")
    args = _parse(["--summary", str(saved), "--write", str(doc)])
    assert args.func(args) == 0
    text = doc.read_text()
    assert "old table" not in text and summary_markdown([saved]) in text
    assert text.startswith("before\n") and text.endswith(f"{end}\nafter\n")
    assert f"{doc}: updated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "OUT", "--write", "guide.md"], "--write fills a table from saved records"),
        (["--summary", "RECORD", "--results", "results"], "--results saves a new run's record"),
    ],
)
def test_options_of_the_other_mode_are_refused(tmp_path, argv, message):
    argv = [str(tmp_path / a) if a.isupper() or a.endswith(".md") or a == "results" else a for a in argv]
    args = _parse(argv)
    with pytest.raises(ValueError, match=message):
        args.func(args)
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written
