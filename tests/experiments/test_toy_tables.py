"""Tables of committed toy results: the paper's layout, pending cells, markers in the docs."""

import json
from dataclasses import asdict

import pytest

from harmono.cli import main
from harmono.experiments.toy_suite import paper_configs
from harmono.experiments.toy_tables import SECTION, is_official, read_results, results_markdown
from harmono.report.marked_sections import markers, update_marked_section

MARK_BEGIN, MARK_END = markers(SECTION)


def _record(task, arch, head, ev, grokking, paper_sampling=False, **train_overrides):
    model, train = paper_configs(task, arch, head, paper_sampling=paper_sampling, **train_overrides)
    seeds = [
        {"seed": k, "ev_top2": e, "train_epoch": a, "test_epoch": b}
        for k, (e, (a, b)) in enumerate(zip(ev, grokking, strict=True))
    ]
    return {"task": task, "model": asdict(model), "train": asdict(train), "seeds": seeds}


def _cells(markdown: str, title_word: str, task: str) -> list[str]:
    """The cells of ``task``'s row in the first table after the title containing ``title_word``."""
    table = markdown[markdown.index(title_word) :]
    row = next(line for line in table.splitlines() if line.startswith(f"| {task} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][1:]


def test_markdown_puts_each_result_in_its_sampling_and_model_cell_beside_the_paper():
    records = [
        # EV 0.4, 0.6, 0.5 -> median 50 [40-60]; epochs (10, 30), (20, 40), (30, None) -> 20 -> 35, 2 of 3
        _record("modadd", "mlp", "harmonic", [0.4, 0.6, 0.5], [(10, 30), (20, 40), (30, None)]),
        _record("modadd", "mlp", "standard", [1.0, 1.0], [(5, 5), (7, 9)], paper_sampling=True),
        _record("lattice", "mlp", "harmonic", [0.9], [(1, 1)], epochs=10),  # not the official protocol
    ]
    text = results_markdown(records)
    leak_free_ev = _cells(text, "Top-2 PCA explained variance (%) of the embeddings, leak-free", "modadd")
    assert leak_free_ev == [
        "pending (45.5 [35-63])", "50 [40-60] (100 [51-100])",
        "pending (60.5 [38-80])", "pending (64 [30-96])",
    ]  # fmt: skip
    leak_free_grokking = _cells(text, "**Grokking, leak-free", "modadd")
    assert leak_free_grokking[1] == "20→35 (2/3) (307→308)"
    paper_ev = _cells(text, "Top-2 PCA explained variance (%) of the embeddings, the paper's", "modadd")
    assert paper_ev[0] == "100 [100-100] (45.5 [35-63])" and paper_ev[1].startswith("pending")
    assert _cells(text, "**Grokking, the paper's", "modadd")[0] == "6→7 (68→1032)"
    assert all(c.startswith("pending") for c in _cells(text, "leak-free", "lattice"))  # 10 epochs: not shown
    assert not is_official(records[2]) and is_official(records[0])


def test_tables_command_fills_the_markers_and_leaves_the_rest(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    record = _record("genealogy", "mlp", "harmonic", [0.5, 0.51], [(98, 298), (90, 300)])
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
