"""A finetune sweep's committed record and the table made from it: a hand-made record, bad files."""

import json

import numpy as np
import pytest

from harmono.cli import main
from harmono.experiments.mono.finetune_sweep import SECTION, save_sweep_record
from harmono.report.marked_sections import markers


def _record(path, accuracies=None):
    """A sweep record in the layout ``run_sweep`` documents: per run its weight, seed and results."""
    accuracies = accuracies or {0.0: [0.70, 0.66, 0.72], 0.1: [0.71, 0.72, 0.70]}
    runs = [{"mono_lambda": lam, "seed": seed, "val_accuracy": acc,
             "val_monoscore": 0.5 + lam / 10 + seed / 1000, "val_dead_units": seed, "seconds": 100.0 + seed}
            for lam, values in accuracies.items() for seed, acc in enumerate(values)]  # fmt: skip
    path.write_text(json.dumps({"model": {"backbone": "tiny-cnn"}, "train": {"epochs": 3}, "runs": runs}))
    return path


def _rows(table):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_the_table_is_the_mean_and_sample_std_per_weight(tmp_path, capsys):
    record = _record(tmp_path / "sweep.json")
    doc = tmp_path / "guide.md"
    doc.write_text("\n".join(markers(SECTION)) + "\n")
    assert main(["finetune", "table", str(record), "--write", str(doc)]) == 0
    rows = _rows(doc.read_text().split("\n", 1)[1].rsplit("\n", 2)[0])
    for row, values in zip(rows, ([0.70, 0.66, 0.72], [0.71, 0.72, 0.70]), strict=True):
        mean, std = np.mean(values, dtype=np.float64), np.std(values, ddof=1, dtype=np.float64)
        assert row[1:3] == ["3", f"{100 * mean:.2f} ± {100 * std:.2f}"]
        assert row[4:] == ["1.0", "101"]  # dead units 0, 1, 2 and seconds 100-102, averaged
    assert [row[0] for row in rows] == ["0", "0.1"]
    assert f"{doc}: updated" in capsys.readouterr().out
    assert main(["finetune", "table", str(record), "--write", str(doc)]) == 0
    assert f"{doc}: already up to date" in capsys.readouterr().out


def test_a_record_whose_run_lacks_a_field_names_the_file_and_the_run(tmp_path, capsys):
    record = _record(tmp_path / "sweep.json")
    saved = json.loads(record.read_text())
    del saved["runs"][4]["val_monoscore"]
    record.write_text(json.dumps(saved))
    assert main(["finetune", "table", str(record)]) == 2
    error = capsys.readouterr().err
    assert str(record) in error and "run 4" in error and "val_monoscore" in error
    record.write_text(json.dumps({**saved, "runs": []}))
    assert main(["finetune", "table", str(record)]) == 2
    assert "at least one run" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{", "[1, 2]"])
def test_a_damaged_record_is_refused_with_its_name(tmp_path, capsys, content):
    record = tmp_path / "sweep.json"
    record.write_text(content)
    assert main(["finetune", "table", str(record)]) == 2
    assert str(record) in capsys.readouterr().err


def test_a_saved_copy_keeps_no_local_path_and_a_damaged_sweep_is_named(tmp_path):
    sweep = tmp_path / "my-sweep"
    sweep.mkdir()
    record = json.loads(_record(sweep / "sweep.json").read_text())
    record["train"] = {"dataset": "folder:/data/images/train", "reference_store": "/srv/stores/ref",
                       "val_dataset": "fashion-mnist", "epochs": 3}  # fmt: skip
    (sweep / "sweep.json").write_text(json.dumps(record))
    saved = save_sweep_record(sweep, tmp_path / "results")
    assert saved == tmp_path / "results" / "my-sweep.json"
    train = json.loads(saved.read_text())["train"]
    assert train == {"dataset": "folder:<local>/train", "reference_store": "<local>/ref",
                     "val_dataset": "fashion-mnist", "epochs": 3}  # fmt: skip
    assert json.loads(saved.read_text())["runs"] == record["runs"]
    (sweep / "sweep.json").write_text("{")
    with pytest.raises(ValueError, match=str(sweep / "sweep.json")):
        save_sweep_record(sweep, tmp_path / "results")
