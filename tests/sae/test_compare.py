"""``compare_rows`` (``harmono sae compare``): a row per run, or mean ± std over seeds of a setting."""

import json

import numpy as np
import pytest

from harmono.report.text_table import format_table
from harmono.sae.compare import METRICS, compare_rows


def fake_run(directory, architecture, mono_coef, seed, r2, mono, device="cpu"):
    directory.mkdir(parents=True)
    setup = {
        "sae": {"architecture": architecture, "d_sae": 64},
        "train": {"mono_coef": mono_coef, "seed": seed, "device": device, "lr": 1e-3},
    }
    (directory / "run.json").write_text(json.dumps(setup))
    summary = {
        "r2": r2,
        "l0": 8.0,
        "dead_fraction": 0.0,
        "mono": {"mean": mono, "mean_dead_as_zero": mono / 2},
        "purity_binary": 0.5,
        "purity_weighted": 0.25,
    }
    (directory / "evaluation.json").write_text(json.dumps({"summary": summary}))
    return directory


def test_runs_differing_only_in_seed_pool_into_mean_and_sample_std(tmp_path):
    r2s, monos = [0.80, 0.82, 0.87], [0.50, 0.61, 0.55]
    runs = [
        fake_run(tmp_path / f"mono-s{seed}", "topk", 0.1, seed, r2, mono, device=("cpu", "cuda")[seed % 2])
        for seed, (r2, mono) in enumerate(zip(r2s, monos, strict=True))
    ]
    runs.append(fake_run(tmp_path / "plain", "topk", 0.0, 0, 0.9, 0.4))
    pooled = compare_rows(runs, pool_seeds=True)
    assert len(pooled) == 2
    label, arch, coef, n, r2_cell, _, _, mono_cell, *_ = pooled[0]
    assert (arch, coef, n) == ("topk", "0.1", "3") and label.endswith("(+2)")
    assert r2_cell == f"{np.mean(r2s):.4f} ± {np.std(r2s, ddof=1):.4f}"
    assert mono_cell == f"{np.mean(monos):.4f} ± {np.std(monos, ddof=1):.4f}"
    assert pooled[1][3:5] == ("1", "0.9000")
    assert len(compare_rows(runs)) == 4  # without pooling: a row per run


def test_runs_with_another_setting_do_not_pool(tmp_path):
    a = fake_run(tmp_path / "a", "topk", 0.1, 0, 0.8, 0.5)
    b = fake_run(tmp_path / "b", "topk", 0.2, 1, 0.8, 0.5)
    assert [row[3] for row in compare_rows([a, b], pool_seeds=True)] == ["1", "1"]


def test_runs_without_a_run_record_do_not_pool(tmp_path):
    a = fake_run(tmp_path / "a", "topk", 0.1, 0, 0.8, 0.5)
    b = fake_run(tmp_path / "b", "relu", 0.0, 0, 0.6, 0.3)
    for run in (a, b):
        (run / "run.json").unlink()
    assert [row[3] for row in compare_rows([a, b], pool_seeds=True)] == ["1", "1"]


def test_a_run_without_evaluation_is_reported(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="harmono sae eval"):
        compare_rows([tmp_path / "run"], pool_seeds=True)


def test_saved_records_give_the_table_of_their_runs_without_the_machines_paths(tmp_path):
    from harmono.sae.compare import save_records

    runs = [fake_run(tmp_path / "runs" / f"mono-s{seed}", "topk", 0.1, seed, 0.8 + seed / 100, 0.5)
            for seed in range(3)]  # fmt: skip
    for run in runs:  # run.json names the feature store's folder; a record must not
        setup = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**setup, "features": str(tmp_path / "store")}))
    records = save_records(runs, tmp_path / "results")
    assert records == [tmp_path / "results" / f"mono-s{seed}.json" for seed in range(3)]
    saved = json.loads(records[0].read_text())
    assert set(saved) == {"name", "sae", "train", "summary", "provenance"}
    assert saved["provenance"]["taken_at_export"] is True and str(tmp_path) not in records[0].read_text()
    from_runs, from_records = compare_rows(runs, pool_seeds=True), compare_rows(records, pool_seeds=True)
    assert from_records == from_runs and from_records[0][0] == "mono-s0 (+2)"  # named, not by path
    assert save_records(records, tmp_path / "again") == []  # records are not saved again


def test_a_record_without_a_metric_names_the_file(tmp_path):
    from harmono.sae.compare import save_records

    record = save_records([fake_run(tmp_path / "run", "topk", 0.1, 0, 0.8, 0.5)], tmp_path / "results")[0]
    saved = json.loads(record.read_text())
    del saved["summary"]["purity_binary"]
    record.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=rf"{record}: expected a summary with every metric"):
        compare_rows([record])
    record.write_text("{")
    with pytest.raises(ValueError, match=str(record)):
        compare_rows([record])


def test_compare_writes_its_table_into_a_marked_section(tmp_path, capsys):
    from harmono.cli import main
    from harmono.report.marked_sections import markers
    from harmono.sae.compare import SECTION

    runs = [str(fake_run(tmp_path / f"s{seed}", "topk", 0.1, seed, 0.8, 0.5)) for seed in range(2)]
    doc = tmp_path / "guide.md"
    doc.write_text("\n".join(markers(SECTION)) + "\n")
    results = tmp_path / "results"
    argv = ["sae", "compare", *runs, "--pool-seeds", "--results", str(results), "--write", str(doc)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"record: {results / 's0.json'}" in out and f"{doc}: updated" in out
    headers = ["run", "arch", "mono_coef", "n", *(title for title, _, _ in METRICS)]
    expected = format_table(headers, compare_rows(sorted(results.glob("*.json")), pool_seeds=True), True)
    assert doc.read_text().split("\n", 1)[1].rsplit("\n", 2)[0] == expected  # the records' table
    assert main(["sae", "compare", str(results / "s0.json"), "--write", str(doc)]) == 0
    assert "already up to date" not in capsys.readouterr().out  # one record: another table


def test_a_missing_path_and_runs_sharing_a_name_are_refused(tmp_path):
    from harmono.sae.compare import save_records

    with pytest.raises(FileNotFoundError, match="neither"):
        compare_rows([tmp_path / "typo.json"])
    runs = [fake_run(tmp_path / arch / "seed0", arch, 0.1, 0, 0.8, 0.5) for arch in ("topk", "relu")]
    with pytest.raises(ValueError, match=r"share the names \['seed0'\]"):
        save_records(runs, tmp_path / "results")
    assert not (tmp_path / "results").exists()  # nothing written
