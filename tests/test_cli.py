from harmono.cli import main


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
