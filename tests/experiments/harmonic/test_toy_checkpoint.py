"""A stack checkpoint read back: the trained models, and their accuracy with dropout off and on."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harmono.cli.main import main
from harmono.data.toy import toy_task
from harmono.experiments.harmonic.toy_batches import EvaluationSet
from harmono.experiments.harmonic.toy_checkpoint import (
    DROPOUT_GAP_SECTION,
    DROPOUT_SITES_SECTION,
    dropout_gap,
    dropout_gap_markdown,
    dropout_gap_rows,
    dropout_site_markdown,
    dropout_site_rows,
    load_stack_checkpoint,
    read_dropout_gap_reports,
)
from harmono.experiments.harmonic.toy_suite import load_run, paper_configs, run_suite
from harmono.experiments.harmonic.toy_tasks import PAPER_SEEDS, ToyConfiguration
from harmono.experiments.harmonic.toy_training import STACK_LAYOUT, train_toy_configs
from harmono.models.toy_stack import DROPOUT_SITES
from harmono.report.marked_sections import markers


def _configurations(eval_dropout, arch="transformer"):
    common = {"epochs": 1, "data_size": 200, "eval_dropout": eval_dropout}
    standard = paper_configs("lattice", arch, "standard", **common)
    # a smaller train fraction: fewer steps per epoch, so the stack puts its seed on the last row
    harmonic = paper_configs("lattice", arch, "harmonic", paper_sampling=True, train_fraction=0.4, **common)
    return [ToyConfiguration(*harmonic, (105,)), ToyConfiguration(*standard, (0, 52))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of a stack measured with dropout on (checkpointed), and the same without."""
    path = tmp_path_factory.mktemp("stack") / "stack.safetensors"
    task = toy_task("lattice")
    noisy = train_toy_configs(task, _configurations(True), progress=False, checkpoint=path)
    quiet = train_toy_configs(task, _configurations(False), progress=False)
    return path, noisy, quiet


def test_the_checkpoint_gives_back_the_trained_models(trained):
    path, noisy, _ = trained
    stack = load_stack_checkpoint(path)
    assert stack.epoch == 1
    assert stack.configurations == tuple(_configurations(True))
    assert [seed for _, seed in stack.members] == [0, 52, 105]  # the stack's rows: longest epochs first
    assert stack.rows_of == ([2], [0, 1])
    for rows, result in zip(stack.rows_of, noisy, strict=True):
        np.testing.assert_array_equal(stack.model.embedding[rows].detach().numpy(), result.embedding)


def test_dropout_gap_measures_as_the_training_loop_does_in_each_mode(trained):
    path, noisy, quiet = trained
    report = dropout_gap(path, draws=1)
    assert (report["task"], report["epoch"], report["draws"]) == ("lattice", 1, 1)
    for configuration, on, off in zip(report["configurations"], noisy, quiet, strict=True):
        seeds = configuration["seeds"]
        assert [s["seed"] for s in seeds] == [s.seed for s in on.seeds]
        # one draw with dropout on is the training loop's own first evaluation; dropout off is the
        # evaluation of the run that measured with dropout off (eval_dropout does not change training)
        np.testing.assert_array_equal([s["train_acc_on"] for s in seeds], on.train_acc[:, 0])
        np.testing.assert_array_equal([s["test_acc_on"] for s in seeds], on.test_acc[:, 0])
        np.testing.assert_array_equal([s["train_acc_off"] for s in seeds], off.train_acc[:, 0])
        np.testing.assert_array_equal([s["test_acc_off"] for s in seeds], off.test_acc[:, 0])
        rms = np.sqrt(np.mean(on.embedding.astype(np.float64) ** 2, axis=(1, 2)))
        np.testing.assert_allclose([s["embedding_rms"] for s in seeds], rms, rtol=1e-6)
    stack = load_stack_checkpoint(path)
    inputs, labels = torch.tensor(stack.task.inputs), torch.tensor(stack.task.labels)
    for site in DROPOUT_SITES:  # one draw at that site, from the evaluation streams
        evaluation = EvaluationSet(
            list(stack.splits), torch.device("cpu"), [s for _, s in stack.members], [site]
        )
        train, test = evaluation.accuracy(stack.model, inputs, labels)
        for configuration, rows in zip(report["configurations"], stack.rows_of, strict=True):
            assert [s["on_at"][site] for s in configuration["seeds"]] == [
                {"train_acc": float(train[row]), "test_acc": float(test[row])} for row in rows
            ]
    many = dropout_gap(path, draws=5)["configurations"][1]["seeds"]
    assert any(s["train_acc_on"] != first["train_acc_on"]
               for s, first in zip(many, report["configurations"][1]["seeds"], strict=True))  # fmt: skip


def _report(seeds, **train_overrides):
    model, train = paper_configs("lattice", "transformer", "harmonic", paper_sampling=True, **train_overrides)
    configuration = ToyConfiguration(model, train, [s["seed"] for s in seeds]).record()
    return {
        "task": "lattice",
        "epoch": 6750,
        "draws": 20,
        "configurations": [{**configuration, "seeds": seeds}],
    }


def test_the_table_gives_each_mode_over_seeds_the_setting_and_the_correlation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.3, 1.0, size=(20, 5))
    keys = ["train_acc_off", "test_acc_off", "train_acc_on", "test_acc_on", "embedding_rms"]
    seeds = [{"seed": seed, **dict(zip(keys, row, strict=True))}
             for seed, row in zip(PAPER_SEEDS, values.tolist(), strict=True)]  # fmt: skip
    by_site = rng.uniform(0.3, 1.0, size=(20, len(DROPOUT_SITES)))
    measured = [{**seed, "on_at": {site: {"train_acc": value, "test_acc": 0.0}
                                   for site, value in zip(DROPOUT_SITES, row, strict=True)}}
                for seed, row in zip(seeds, by_site.tolist(), strict=True)]  # fmt: skip
    control, few = _report(measured, embedding_reg="none"), _report(seeds[:3])
    headers, rows = dropout_gap_rows([control, few])
    assert headers[:4] == ["task", "model", "setting", "epoch"]

    def cell(column):
        return f"{column.mean():.2f} ± {column.std(ddof=1):.2f} ({(column > 0.9).sum()}/{len(column)} > 0.9)"

    def cells(block):
        return [cell(block[:, k]) for k in (0, 2, 1, 3)]

    corr = np.corrcoef(values[:, 4], values[:, 0])[0, 1]
    few_corr = np.corrcoef(values[:3, 4], values[:3, 0])[0, 1]
    model = "harmonic transformer, paper sampling"
    assert rows == [
        ["lattice", model, "no embedding regulariser", "6750", *cells(values), f"{corr:.2f}"],
        ["lattice", model, "other settings", "6750", *cells(values[:3]), f"{few_corr:.2f}"],
    ]
    folder = tmp_path / "reports"
    folder.mkdir()
    for name, report in (("a.json", control), ("b.json", few)):
        (folder / name).write_text(json.dumps(report))
    markdown = dropout_gap_markdown(read_dropout_gap_reports(folder))
    assert markdown.splitlines()[2:] == ["| " + " | ".join(row) + " |" for row in rows]
    site_headers, site_rows = dropout_site_rows([control, few])  # the report without sites is left out
    assert site_headers[4:] == [
        "dropout off", "on only: attention weights", "on only: attention output",
        "on only: feed-forward hidden", "on only: feed-forward output", "dropout on",
    ]  # fmt: skip
    columns = np.column_stack([values[:, 0], by_site, values[:, 2]])  # off, each site alone, on
    cells_by_site = [cell(column) for column in columns.T]
    assert site_rows == [["lattice", model, "no embedding regulariser", "6750", *cells_by_site]]
    sites_markdown = dropout_site_markdown(read_dropout_gap_reports(folder))
    assert sites_markdown.splitlines()[2:] == ["| " + " | ".join(site_rows[0]) + " |"]
    assert dropout_site_markdown([few]) == "No report measures dropout by site yet.\n"
    doc = tmp_path / "doc.md"
    begin, end = markers(DROPOUT_GAP_SECTION)
    site_begin, site_end = markers(DROPOUT_SITES_SECTION)
    doc.write_text(f"text\n{begin}\nold\n{end}\n{site_begin}\nold\n{site_end}\n")
    results = tmp_path / "results"
    results.mkdir()
    assert main(["toy", "tables", str(results), "--dropout-gap", str(folder), "--write", str(doc)]) == 0
    assert markdown.strip() in doc.read_text() and sites_markdown.strip() in doc.read_text()
    assert "old" not in doc.read_text()
    (folder / "c.json").write_text(json.dumps({"task": "lattice"}))
    with pytest.raises(ValueError, match="c.json"):
        read_dropout_gap_reports(folder)
    capsys.readouterr()


def test_damaged_or_foreign_checkpoints_are_refused_with_the_file_named(trained, tmp_path):
    path, _, _ = trained
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.safetensors is truncated"):
        load_stack_checkpoint(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"flat": torch.zeros(3)}, foreign)  # a safetensors file without the stack's spec
    with pytest.raises(ValueError, match="foreign.safetensors: not a toy-stack checkpoint"):
        load_stack_checkpoint(foreign)
    stack = load_stack_checkpoint(path)
    spec = {"task": "lattice", "layout": "another layout",
            "configurations": [c.record() for c in stack.configurations]}  # fmt: skip
    other = tmp_path / "other.safetensors"
    save_file({"flat": stack.model.flat.detach()}, other, {"spec": json.dumps(spec), "epoch": "1"})
    with pytest.raises(ValueError, match="expected a stack of layout"):
        load_stack_checkpoint(other)
    spec["layout"] = STACK_LAYOUT
    save_file({"flat": stack.model.flat.detach()[:-1]}, other, {"spec": json.dumps(spec), "epoch": "1"})
    with pytest.raises(ValueError, match="expected a tensor 'flat' of shape"):
        load_stack_checkpoint(other)
    with pytest.raises(ValueError, match="draws must be at least 1, got 0"):
        dropout_gap(path, draws=0)


def test_a_stack_without_dropout_is_refused(tmp_path):
    path = tmp_path / "mlp.safetensors"
    configuration = ToyConfiguration(
        *paper_configs("lattice", "mlp", "harmonic", epochs=1, data_size=100), (0,)
    )
    train_toy_configs(toy_task("lattice"), [configuration], progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="mlp.safetensors: expected transformers with dropout"):
        dropout_gap(path)


def test_the_command_writes_the_report_and_keeps_an_existing_one(trained, tmp_path, capsys):
    path, _, _ = trained
    out = tmp_path / "gap.json"
    assert main(["toy", "dropout-gap", str(path), "--draws", "2", "--json", str(out), "--markdown"]) == 0
    record = json.loads(out.read_text())
    assert record["draws"] == 2 and "harmono_commit" in record["provenance"]
    assert record["configurations"] == dropout_gap(path, draws=2)["configurations"]
    printed = capsys.readouterr().out
    assert re.search(
        r"\| lattice +\| harmonic transformer, paper sampling +\| other settings +\| 1 +\|", printed
    )
    assert re.search(r"\| - +\|\n", printed)  # one seed: no correlation
    out.write_text("{}")
    assert main(["toy", "dropout-gap", str(path), "--json", str(out)]) != 0
    assert "pass --overwrite" in capsys.readouterr().err and out.read_text() == "{}"
    assert main(["toy", "dropout-gap", str(path), "--draws", "1", "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["draws"] == 1


def test_the_suite_keeps_each_stacks_final_state(tmp_path):
    run_suite(tmp_path, ["genealogy"], ["mlp"], (0, 52), False, epochs=2)
    (path,) = tmp_path.glob("stack-*.safetensors")
    stack = load_stack_checkpoint(path)
    assert stack.epoch == 2
    for configuration, rows in zip(stack.configurations, stack.rows_of, strict=True):
        _, arrays = load_run(tmp_path / f"genealogy-mlp-{configuration.model.head}")
        np.testing.assert_array_equal(stack.model.embedding[rows].detach().numpy(), arrays["embedding"])
