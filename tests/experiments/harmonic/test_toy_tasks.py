import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from harmono.cli import main
from harmono.data.toy import toy_task
from harmono.experiments.harmonic.toy_suite import (
    CURVES_FILE,
    RESULTS_FILE,
    is_sampling_twin,
    load_run,
    paper_configs,
    run_config,
    run_suite,
    training_seconds,
)
from harmono.experiments.harmonic.toy_tables import suite_rows
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS, ToyTrainConfig, embedding_penalty
from harmono.experiments.harmonic.toy_training import train_toy_configs, train_toy_seeds


@pytest.mark.parametrize(
    ("task", "arch", "head", "reg"),
    [("modadd", "mlp", "harmonic", "rms"), ("equivalence", "mlp", "standard", "l2"),
     ("permutation", "transformer", "standard", "rms")],
)  # fmt: skip
def test_batched_seeds_equal_seeds_trained_one_by_one(task, arch, head, reg):
    model, train = paper_configs(task, arch, head, epochs=2, embedding_reg=reg, data_size=200)
    spec = toy_task(task)
    seeds = (0, 52, 105)
    together = train_toy_seeds(spec, model, train, seeds, progress=False)
    for k, seed in enumerate(seeds):
        alone = train_toy_seeds(spec, model, train, (seed,), progress=False)
        np.testing.assert_allclose(together.embedding[k], alone.embedding[0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(together.output_centers[k], alone.output_centers[0], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(together.test_acc[k], alone.test_acc[0])
        mine, reference = together.seeds[k], alone.seeds[0]
        assert mine.ev_top2 == pytest.approx(reference.ev_top2, abs=1e-6)
        for field in ("seed", "train_epoch", "test_epoch", "final_train_acc", "final_test_acc", "leakage"):
            assert getattr(mine, field) == getattr(reference, field)


def test_embedding_penalties_follow_their_formulas():
    e = torch.randn(2, 5, 3, dtype=torch.float64)
    for s in range(2):
        rms = sum(math.sqrt(sum(e[s, i, j].item() ** 2 for i in range(5)) / 5) for j in range(3)) / 3
        l2 = sum(e[s, i, j].item() ** 2 for i in range(5) for j in range(3)) / 15
        assert embedding_penalty(e, "rms")[s].item() == pytest.approx(rms, rel=1e-12)
        assert embedding_penalty(e, "l2")[s].item() == pytest.approx(l2, rel=1e-12)
    assert torch.equal(embedding_penalty(e, "none"), torch.zeros(2, dtype=torch.float64))


def test_harmonic_mlp_learns_the_lattice_and_its_embedding_is_flat():
    # the paper: harmonic MLP on in-context learning, test > 0.9 from about epoch 10, EV2 = 100%
    model, train = paper_configs("lattice", "mlp", "harmonic", epochs=40)
    result = train_toy_seeds(toy_task("lattice"), model, train, (0, 52), progress=False)
    for seed in result.seeds:
        assert seed.final_test_acc > 0.9 and seed.test_epoch is not None and seed.test_epoch <= 20
        assert seed.ev_top2 > 0.9
        assert seed.ev_top2 == pytest.approx(sum(seed.ev_ratios[:2]))
    assert result.test_acc.shape == result.train_acc.shape == (2, 40)


def test_train_config_and_task_mismatch_errors():
    with pytest.raises(ValueError, match="embedding_reg must be one of"):
        ToyTrainConfig(embedding_reg="l1")
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\), got 0.0"):
        ToyTrainConfig(train_fraction=0.0)
    with pytest.raises(
        ValueError, match="official_draws .* needs paper_sampling=True, got paper_sampling=False"
    ):
        ToyTrainConfig(official_draws=True)
    model, train = paper_configs("modadd", "mlp", "harmonic")
    with pytest.raises(ValueError, match=r"vocab_size 31 and seq_len 2, task 'lattice' has 25 and 3"):
        train_toy_seeds(toy_task("lattice"), model, train, (0,), progress=False)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        train_toy_seeds(toy_task("modadd"), model, train, (0, 0), progress=False)


def test_paper_configs_follow_the_official_code():
    model, train = paper_configs("permutation", "transformer", "harmonic")
    assert (train.epochs, train.weight_decay, train.lr, train.batch_size) == (10_000, 0.005, 2e-3, 32)
    assert model.exponent == 2.0 and model.embed_dim == 16
    _, mlp = paper_configs("modadd", "mlp", "standard")
    assert (mlp.epochs, mlp.weight_decay, mlp.embedding_reg, mlp.reg_strength) == (7_000, 0.01, "rms", 0.01)
    assert PAPER_SEEDS[:3] == (0, 52, 105) and PAPER_SEEDS[-1] == 1000 and len(PAPER_SEEDS) == 20


def test_run_is_saved_reused_and_guarded(tmp_path):
    record = run_config("genealogy", "mlp", "harmonic", tmp_path, (0, 52), False, epochs=2)
    saved, arrays = load_run(tmp_path)
    assert saved == json.loads(json.dumps(record))
    assert arrays["embedding"].shape == (2, 130, 16) and arrays["test_acc"].shape == (2, 2)
    stamp = (tmp_path / CURVES_FILE).stat().st_mtime_ns
    assert run_config("genealogy", "mlp", "harmonic", tmp_path, (0, 52), False, epochs=2) == saved
    assert (tmp_path / CURVES_FILE).stat().st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(ValueError, match="holds a run with other settings"):
        run_config("genealogy", "mlp", "harmonic", tmp_path, (0, 52), False, epochs=3)
    with pytest.raises(FileNotFoundError, match="holds no finished toy run"):
        load_run(tmp_path / "missing")


def test_suite_resumes_from_the_missing_runs(tmp_path):
    records = run_suite(tmp_path, ["genealogy"], ["mlp"], (0, 52), False, epochs=2)
    assert [(r["model"]["arch"], r["model"]["head"]) for r in records] == [
        ("mlp", "standard"),
        ("mlp", "harmonic"),
    ]
    kept = tmp_path / "genealogy-mlp-standard" / CURVES_FILE
    stamp = kept.stat().st_mtime_ns
    (tmp_path / "genealogy-mlp-harmonic" / RESULTS_FILE).unlink()  # as if killed before it finished
    again = run_suite(tmp_path, ["genealogy"], ["mlp"], (0, 52), False, epochs=2)
    assert kept.stat().st_mtime_ns == stamp
    assert again[1]["seeds"] == records[1]["seeds"]  # retrained to the same result


def _record(task, arch, head, ev, epochs):
    seeds = [{"ev_top2": e, "train_epoch": a, "test_epoch": b} for e, (a, b) in zip(ev, epochs, strict=True)]
    return {"task": task, "model": {"arch": arch, "head": head}, "seeds": seeds}


def test_suite_tables_show_median_range_and_the_paper():
    records = [
        _record("modadd", "mlp", "harmonic", [1.0, 0.5, 0.9], [(300, 310), (200, None), (100, 150)]),
        _record("modadd", "mlp", "standard", [0.4, 0.45, 0.5], [(10, 1000), (20, 900), (30, 800)]),
    ]
    headers, rows = suite_rows(records, "ev")
    assert headers == ["task", "standard MLP (paper)", "harmonic MLP (paper)"]
    assert rows == [["modadd", "45 [40-50] (45.5 [35-63])", "90 [50-100] (100 [51-100])"]]
    _, rows = suite_rows(records, "grokking")
    assert rows == [["modadd", "20→900 (69→1033)", "200→230 (2/3) (308→309)"]]  # the paper's, counted from 1


def test_toy_run_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["toy", "run", "--task", "equivalence", "--head", "standard", "--seeds", "2", "--epochs", "3"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "standard MLP (paper)" in printed and "96.5 [86-98]" in printed
    record = json.loads((out / RESULTS_FILE).read_text())
    assert [s["seed"] for s in record["seeds"]] == [0, 52]
    assert {"ev_top2", "train_epoch", "test_epoch", "leakage"} <= set(record["seeds"][0])
    for figure in ("ev_curves.png", "grokking.png", "embeddings_pca.png"):
        assert (out / figure).stat().st_size > 0
    assert main([*args, "--out", str(out), "--no-progress", "--lr", "0.01"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["toy", "run", "--task", "modadd", "--seeds", "21", "--out", str(out)]) == 2


def test_seed_list_trains_those_seeds_and_refuses_repeats_negatives_and_seeds(tmp_path, capsys):
    args = ["toy", "run", "--task", "equivalence", "--head", "standard", "--epochs", "2", "--no-progress"]
    out = tmp_path / "run"
    assert main([*args, "--seed-list", "1001", "7", "--out", str(out)]) == 0
    record = json.loads((out / RESULTS_FILE).read_text())
    assert [s["seed"] for s in record["seeds"]] == [1001, 7]
    run_config("equivalence", "mlp", "standard", tmp_path / "alone", [7], False, epochs=2)
    alone = json.loads((tmp_path / "alone" / RESULTS_FILE).read_text())
    assert record["seeds"][1] == alone["seeds"][0]
    capsys.readouterr()
    assert main([*args, "--seed-list", "3", "4", "3", "--out", str(tmp_path / "b")]) == 2
    assert "--seed-list names seeds [3] more than once" in capsys.readouterr().err
    assert main([*args, "--seed-list", "-1", "--out", str(tmp_path / "c")]) == 2
    assert "--seed-list takes seeds >= 0, got [-1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--seed-list", "3", "--seeds", "2", "--out", str(tmp_path / "d")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_toy_efficiency_command(tmp_path, capsys):
    argv = [
        "toy",
        "efficiency",
        "--task",
        "modadd",
        "--fractions",
        "0.3",
        "0.6",
        "--seeds",
        "2",
        "--epochs",
        "2",
    ]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "standard MLP" in printed and "harmonic MLP" in printed and "±" in printed
    assert (tmp_path / "data_efficiency.png").stat().st_size > 0
    record = json.loads((tmp_path / "modadd-mlp-harmonic-f0.3" / RESULTS_FILE).read_text())
    assert record["train"]["train_fraction"] == 0.3
    # another exponent adds one harmonic curve and reuses the standard runs
    standard = tmp_path / "modadd-mlp-standard-f0.6" / RESULTS_FILE
    written = standard.stat().st_mtime_ns
    assert main([*argv, "--exponents", "4", "--out", str(tmp_path), "--no-progress"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("train fraction"))
    assert header.split("  ")[-1].strip() == "harmonic MLP, n=4" and header.count("harmonic") == 1
    record = json.loads((tmp_path / "modadd-mlp-harmonic-n4-f0.6" / RESULTS_FILE).read_text())
    assert (record["model"]["exponent"], record["train"]["train_fraction"]) == (4.0, 0.6)
    assert standard.stat().st_mtime_ns == written


def test_suite_reuses_committed_results_and_never_overwrites_them(tmp_path, monkeypatch):
    results = tmp_path / "results"
    records = run_suite(tmp_path / "runs", ["genealogy"], ["mlp"], (0, 52), False, samplings=["paper"],
                        results_dir=results, epochs=2)  # fmt: skip
    saved = {p.name: p.read_bytes() for p in results.glob("*.json")}
    assert sorted(saved) == ["genealogy-mlp-harmonic-paper.json", "genealogy-mlp-standard-paper.json"]
    record = json.loads(saved["genealogy-mlp-harmonic-paper.json"])
    assert record["protocol"].startswith("official code's toy protocol")
    assert "harmono_commit" in record["provenance"]

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the committed results were there")

    monkeypatch.setattr("harmono.experiments.harmonic.toy_suite.train_toy_configs", no_training)
    again = run_suite(tmp_path / "fresh-runs", ["genealogy"], ["mlp"], (0, 52), False, samplings=["paper"],
                      results_dir=results, epochs=2)  # fmt: skip
    assert [r["seeds"] for r in again] == json.loads(json.dumps([r["seeds"] for r in records]))
    assert "eval_dropout" not in record["train"]  # left out at its default, as before the field existed
    spelled_out = results / "genealogy-mlp-harmonic-paper.json"
    spelled_out.write_text(json.dumps({**record, "train": {**record["train"], "eval_dropout": False}}))
    run_suite(tmp_path / "fresh-runs", ["genealogy"], ["mlp"], (0, 52), False, samplings=["paper"],
              results_dir=results, epochs=2)  # fmt: skip
    spelled_out.write_bytes(saved[spelled_out.name])
    with pytest.raises(ValueError, match="genealogy-mlp-standard-paper.json holds a run with other settings"):
        run_suite(tmp_path / "other-runs", ["genealogy"], ["mlp"], (0, 52), False, samplings=["paper"],
                  results_dir=results, epochs=3)  # fmt: skip
    assert {p.name: p.read_bytes() for p in results.glob("*.json")} == saved


def test_a_task_used_whole_trains_its_paper_sampling_twin_once(tmp_path, monkeypatch):
    from harmono.experiments.harmonic import toy_suite

    trained = []

    def counting(task, configurations, *args, **kwargs):
        trained.append([c.train.paper_sampling for c in configurations])
        return train_toy_configs(task, configurations, *args, **kwargs)

    monkeypatch.setattr(toy_suite, "train_toy_configs", counting)
    leak_free, paper = run_suite(tmp_path / "runs", ["permutation"], ["mlp"], (0, 52), False,
                                 heads=["harmonic"], samplings=["leak-free", "paper"], epochs=2)  # fmt: skip
    assert trained == [[False]]
    assert (leak_free["train"]["paper_sampling"], paper["train"]["paper_sampling"]) == (False, True)
    assert paper["seeds"] == leak_free["seeds"]
    assert training_seconds([leak_free, paper]) == leak_free["seconds"] == paper["seconds"]
    # the twin's record is what the paper-sampling configuration gives when trained on its own
    model, train = paper_configs("permutation", "mlp", "harmonic", epochs=2, paper_sampling=True)
    alone = train_toy_seeds(toy_task("permutation"), model, train, (0, 52), progress=False)
    assert [asdict(s) for s in alone.seeds] == paper["seeds"]
    _, arrays = load_run(tmp_path / "runs" / "permutation-mlp-harmonic-paper")
    np.testing.assert_array_equal(arrays["test_acc"], alone.test_acc)
    trained.clear()
    run_suite(tmp_path / "runs", ["genealogy"], ["mlp"], (0,), False, heads=["harmonic"],
              samplings=["leak-free", "paper"], epochs=1)  # fmt: skip
    assert trained == [[False, True]]
    genealogy = [json.loads((tmp_path / "runs" / name / RESULTS_FILE).read_text())
                 for name in ("genealogy-mlp-harmonic", "genealogy-mlp-harmonic-paper")]  # fmt: skip
    assert training_seconds(genealogy) == pytest.approx(sum(r["seconds"] for r in genealogy))


def test_toy_clusters_command(tmp_path, capsys):
    run_config("equivalence", "mlp", "harmonic", tmp_path / "eq", (0, 52), False, epochs=2)
    assert main(["toy", "clusters", str(tmp_path / "eq")]) == 0
    printed = capsys.readouterr().out
    assert "within / between class distance" in printed and "eq " in printed
    run_config("modadd", "mlp", "harmonic", tmp_path / "mod", (0,), False, epochs=1)
    assert main(["toy", "clusters", str(tmp_path / "mod")]) == 2
    assert "task 'modadd' has no token classes" in capsys.readouterr().err


def test_suite_and_efficiency_take_the_sampling_from_samplings_only(tmp_path, capsys):
    for command in (["suite", "--tasks", "genealogy"], ["efficiency", "--task", "genealogy"]):
        argv = ["toy", *command, "--out", str(tmp_path), "--paper-sampling", "--epochs", "1", "--no-progress"]
        assert main(argv) == 2
        assert "use --samplings paper" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_official_draws_are_refused_without_paper_sampling(tmp_path, capsys):
    for command in (["suite", "--tasks", "genealogy"], ["efficiency", "--task", "genealogy"]):
        argv = ["toy", *command, "--out", str(tmp_path), "--official-draws", "--epochs", "1", "--no-progress"]
        assert main(argv) == 2
        assert "run it with --samplings paper, got --samplings leak-free" in capsys.readouterr().err
    argv = [
        "toy",
        "run",
        "--task",
        "modadd",
        "--out",
        str(tmp_path / "run"),
        "--official-draws",
        "--epochs",
        "1",
    ]
    assert main(argv) == 2
    assert "add --paper-sampling" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_official_draws_of_a_task_used_whole_train_on_their_own_split(tmp_path):
    # the permutation group's official split is not harmono's leak-free one, so it is no sampling twin
    leak_free, official = (
        run_suite(tmp_path / name, ["permutation"], ["mlp"], (0,), False, heads=["harmonic"],
                  samplings=[sampling], epochs=1, **extra)[0]
        for name, sampling, extra in (("a", "leak-free", {}), ("b", "paper", {"official_draws": True}))
    )  # fmt: skip
    assert official["train"]["official_draws"] and official["train"]["paper_sampling"]
    assert not is_sampling_twin(official)
    assert official["seeds"][0]["leakage"] == 0.0
    assert official["seeds"] != leak_free["seeds"]
