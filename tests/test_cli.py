import json
import re

from harmono.cli import main


def test_demo_writes_table_figure_and_json(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path), "--toy-steps", "300", "--mono-per-cluster", "60", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for case in ("two_points", "five_points"):
        for head in ("harmonic", "linear"):
            assert re.search(rf"^{case}\s+{head}\s+\S+", printed, flags=re.MULTILINE)
    assert printed.count("[holds]") + printed.count("[DOES NOT HOLD]") == 8
    for kind in ("one concept", "two concepts", "random"):
        assert re.search(rf"^{kind}\s+-?\d\.\d{{3}}\s", printed, flags=re.MULTILINE)
    png = tmp_path / "toy_points.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "toy_points.json").read_text())
    assert record["config"]["steps"] == 300
    assert {(r["case"], r["head"]) for r in record["results"]} == {
        (c, h) for c in ("two_points", "five_points") for h in ("harmonic", "linear")
    }
    mono = json.loads((tmp_path / "mono_toy.json").read_text())
    assert mono["config"]["per_cluster"] == 60
    assert [k["kind"] for k in mono["result"]["kinds"]] == ["one concept", "two concepts", "random"]


def test_demo_rejects_bad_steps(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--toy-steps", "0"]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err


def test_demo_output_path_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker), "--toy-steps", "1"]) == 2
    assert "harmono: error:" in capsys.readouterr().err


def test_demo_rejects_bad_mono_toy_settings(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--toy-steps", "1", "--mono-clusters", "1"]) == 2
    assert "clusters must be >= 2" in capsys.readouterr().err
