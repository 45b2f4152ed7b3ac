"""``harmono demo`` on the command line: bad settings refused; the report written unless told not to."""

import json

import pytest

from harmono.cli import demo as demo_cli
from harmono.cli import main
from harmono.experiments.demo import DEMO_FILE, DemoOutcome


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


@pytest.mark.parametrize("no_report", [False, True])
def test_the_demo_command_writes_the_report_after_the_run_unless_told_not_to(
    tmp_path, monkeypatch, capsys, no_report
):
    def fake_run_demo(out_dir, config, toy_config, mono_config, progress, command):
        (tmp_path / DEMO_FILE).write_text(json.dumps({"steps": [], "skipped": {"sae": "no data"}}))
        return DemoOutcome(tmp_path, skipped={"sae": "no data"})

    monkeypatch.setattr(demo_cli, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path), *(["--no-report"] if no_report else [])]) == 0
    printed = capsys.readouterr().out
    assert "skipped sae: no data" in printed and f"everything is in {tmp_path}/" in printed
    report = tmp_path / "report.html"
    if no_report:
        assert not report.exists() and "report:" not in printed
    else:
        assert "Skipped steps" in report.read_text() and f"report: {report} (open it" in printed
