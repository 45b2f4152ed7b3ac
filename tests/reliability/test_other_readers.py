"""Run records, results, evaluations, store manifests, shards: a damaged one is named and left as it was."""

import json

import numpy as np
import pytest

from harmono.analysis.latent_table import read_latent_table
from harmono.cli.main import main
from harmono.core.io import read_json
from harmono.experiments.demo import STEP_FILE, DemoOutcome, run_step
from harmono.experiments.harmonic import gpt_train
from harmono.experiments.harmonic.toy_suite import load_run, run_stack
from harmono.experiments.mono import finetune_eval
from harmono.features import FeatureStore, FeatureStoreWriter
from harmono.features.store_format import MANIFEST, shard_name
from harmono.training.runs import RUN_FILE, check_resumable

TRUNCATED = '{"summary": {"mono'
NOT_UTF8 = b'{"a": "\xff"}'


def write(path, content):
    """Write ``content`` (text, bytes, or a record as JSON) to ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def fails_naming(path, call, error=ValueError, expected="expected"):
    """``call()`` raises ``error`` whose message names ``path`` and says what was ``expected``."""
    with pytest.raises(error) as err:
        call()
    assert str(path) in str(err.value) and expected in str(err.value)


def cli_fails_naming(path, arguments, capsys):
    """``harmono ARGUMENTS`` exits with 2 and an error that names ``path``."""
    assert main(arguments) == 2
    message = capsys.readouterr().err
    assert message.startswith("harmono: error: ") and str(path) in message


@pytest.mark.parametrize(
    "content", [TRUNCATED, NOT_UTF8, "[1, 2]", {"model": {}, "train": {}}, {"model": {}, "train": "x"}]
)
def test_a_damaged_run_record_refuses_the_resume_naming_it(tmp_path, unchanged, content):
    path = write(tmp_path / RUN_FILE, content)
    same = unchanged(tmp_path)
    record = {"model": {"device": "cpu", "n": 1}, "train": {"lr": 0.1}, "world_size": 1}
    fails_naming(path, lambda: check_resumable(tmp_path, RUN_FILE, record, ("model", "train", "world_size")))
    assert same()


GPT_RUN = {"model": {"head": "standard", "n_embd": 8}, "train": {"lr": 0.1, "min_lr": 0.01, "warmup_steps": 1,
                                                                 "seed": 0}}  # fmt: skip
GPT_RESULTS = {"final_val_loss": 1.0, "tokens": 10, "seconds": 1.0}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (RUN_FILE, TRUNCATED),
        (RUN_FILE, {"model": {}}),
        (RUN_FILE, {**GPT_RUN, "model": {"n_embd": 8}}),
        (RUN_FILE, {**GPT_RUN, "train": "x"}),
        ("results.json", "7"),
        ("results.json", {"tokens": 10, "seconds": 1.0}),
    ],
)
def test_gpt_summary_names_a_damaged_run_file(tmp_path, unchanged, capsys, name, content):
    run = tmp_path / "run"
    write(run / RUN_FILE, GPT_RUN)
    write(run / "results.json", GPT_RESULTS)
    assert main(["gpt", "summary", str(run)]) == 0  # the undamaged run reads
    path = write(run / name, content)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["gpt", "summary", str(run)], capsys)
    assert same()


def test_sae_eval_and_compare_name_a_run_record_whose_train_is_no_object(tmp_path, unchanged, capsys):
    summary = {"r2": 0.9, "l0": 8.0, "dead_fraction": 0.0, "mono": {"mean": 0.5, "mean_dead_as_zero": 0.4}}
    summary |= {"purity_binary": 0.1, "purity_weighted": 0.2}
    run = tmp_path / "run"
    write(run / "evaluation.json", {"summary": summary})
    path = write(run / RUN_FILE, {"sae": {}, "train": "x"})
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["sae", "compare", str(run)], capsys)
    fails_naming(path, lambda: read_json(path, "an SAE run record", ("train",), ("train",)))
    assert same()


@pytest.mark.parametrize("content", [TRUNCATED, {"latents": []}, {"summary": {"mono": {}}}, {"summary": 3}])
def test_sae_compare_names_a_damaged_evaluation(tmp_path, unchanged, capsys, content):
    path = write(tmp_path / "run" / "evaluation.json", content)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["sae", "compare", str(path.parent)], capsys)
    assert same()


def test_sae_compare_names_a_damaged_run_record(tmp_path, unchanged, capsys):
    summary = {"r2": 0.9, "l0": 8.0, "dead_fraction": 0.0, "mono": {"mean": 0.5, "mean_dead_as_zero": 0.4}}
    summary |= {"purity_binary": 0.1, "purity_weighted": 0.2}
    run = tmp_path / "run"
    write(run / "evaluation.json", {"summary": summary})
    path = write(run / RUN_FILE, TRUNCATED)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["sae", "compare", str(run)], capsys)
    assert same()


@pytest.mark.parametrize("content", [TRUNCATED, {"summary": {}}, NOT_UTF8])
def test_the_latent_table_names_a_damaged_evaluation(tmp_path, unchanged, content):
    path = write(tmp_path / "evaluation.json", content)
    same = unchanged(tmp_path)
    fails_naming(path, lambda: read_latent_table(tmp_path))
    assert same()


@pytest.mark.parametrize(
    ("name", "content"), [("demo.json", TRUNCATED), ("demo.json", "[]"), ("step.json", "{}")]
)
def test_the_report_names_a_damaged_demo_file(tmp_path, unchanged, capsys, name, content):
    run = tmp_path / "demo"
    write(run / "demo.json", {"steps": ["toy-points"]})
    write(run / "toy-points" / "step.json", {"settings": {}, "summary": {}})
    path = write(run / name if name == "demo.json" else run / "toy-points" / name, content)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["report", str(run)], capsys)
    assert same()


@pytest.mark.parametrize("content", [TRUNCATED, "null", {"summary": {}}])
def test_a_damaged_demo_step_is_named_and_not_rerun(tmp_path, unchanged, content):
    path = write(tmp_path / "step" / STEP_FILE, content)
    same = unchanged(tmp_path)
    fails_naming(path, lambda: run_step(tmp_path, "step", {"a": 1}, lambda d: {}, DemoOutcome(tmp_path)))
    assert same()


@pytest.mark.parametrize(
    "content",
    [
        {"task": "genealogy", "model": {}, "train": {}},
        {"task": "genealogy", "model": {}, "train": {}, "seeds": [1]},
        TRUNCATED,
    ],
)
def test_a_damaged_committed_toy_record_is_named_before_training(tmp_path, unchanged, content):
    path = write(tmp_path / "results" / "v.json", content)
    same = unchanged(tmp_path)
    fails_naming(
        path,
        lambda: run_stack(
            "genealogy",
            "mlp",
            [("v", "harmonic", {}, {})],
            tmp_path / "out",
            (0,),
            False,
            results_dir=path.parent,
        ),
    )
    assert same()


def test_a_damaged_toy_run_record_is_named(tmp_path, unchanged):
    path = write(tmp_path / "results.json", "[]")
    same = unchanged(tmp_path)
    fails_naming(path, lambda: load_run(tmp_path))
    assert same()


def test_toy_tables_name_a_damaged_result_record(tmp_path, unchanged, capsys):
    path = write(tmp_path / "broken.json", NOT_UTF8)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["toy", "tables", str(tmp_path)], capsys)
    assert same()


@pytest.mark.parametrize("read_results", [gpt_train.read_results, finetune_eval.read_results])
def test_damaged_results_are_named(tmp_path, unchanged, read_results):
    path = write(tmp_path / "results.json", TRUNCATED)
    same = unchanged(tmp_path)
    fails_naming(path, lambda: read_results(tmp_path))
    assert same()


@pytest.mark.parametrize("content", [NOT_UTF8, TRUNCATED])
def test_gpt_train_names_a_damaged_config_file(tmp_path, unchanged, capsys, content):
    path = write(tmp_path / "config.json", content)
    same = unchanged(tmp_path)
    cli_fails_naming(path, ["gpt", "train", "--config", str(path), "--out", str(tmp_path / "run")], capsys)
    assert same()


def small_store(directory):
    """A feature store of 6 rows of 3 features in two shards."""
    with FeatureStoreWriter(directory, 3, {"dataset": "tiny"}, dtype="float32", shard_rows=4) as writer:
        writer.append(np.ones((6, 3), dtype=np.float32), [f"s:{i}" for i in range(6)], [0, 1, 0, 1, 0, 1])
    return directory


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: TRUNCATED,
        lambda m: "[]",
        lambda m: {k: v for k, v in m.items() if k != "dtype"},
        lambda m: {**m, "shards": [{k: v for k, v in m["shards"][0].items() if k != "ids"}]},
        lambda m: {**m, "shards": 3},
    ],
)
def test_a_damaged_manifest_is_named(tmp_path, unchanged, damage):
    store = small_store(tmp_path / "store")
    path = store / MANIFEST
    write(path, damage(json.loads(path.read_text())))
    same = unchanged(tmp_path)
    fails_naming(path, lambda: FeatureStore(store))
    assert same()


@pytest.mark.parametrize("verify", ["checksum", "shape"])
@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) - 7], lambda b: b[:40], lambda b: np.lib.format.magic(1, 0) + b"\x00" * 60],
)
def test_a_truncated_or_foreign_shard_is_named(tmp_path, unchanged, verify, damage):
    store = small_store(tmp_path / "store")
    path = store / shard_name(0)
    path.write_bytes(damage(path.read_bytes()))
    same = unchanged(tmp_path)
    fails_naming(path, lambda: FeatureStore(store, verify=verify), expected="")
    assert same()


def test_a_shard_of_another_shape_is_named(tmp_path, unchanged):
    store = small_store(tmp_path / "store")
    path = store / shard_name(1)
    np.save(path, np.ones((2, 4), dtype=np.float32))
    same = unchanged(tmp_path)
    fails_naming(path, lambda: FeatureStore(store, verify="shape"), expected="expected 2 x 3 float32")
    assert same()
