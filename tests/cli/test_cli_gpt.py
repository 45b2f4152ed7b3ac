"""``harmono gpt prepare | train | sample | summary | analyze`` on a tiny corpus; the built-in recipes."""

import json
from pathlib import Path

import pytest
import torch

from harmono.analysis.parallelogram import analogy_quadruples, parallelogram_loss, summarize
from harmono.cli import main
from harmono.cli.gpt import RECIPES, analysis_table, read_gpt_recipe
from harmono.data.analogies import ANALOGY_TASKS, pair_token_ids
from harmono.data.text import load_tokenizer
from harmono.experiments.harmonic.gpt_summary import SECTION, summary_rows
from harmono.models.gpt import GPT, GPTConfig
from harmono.report.marked_sections import markers

pytest.importorskip("tokenizers", reason="the text extra (tokenizers) is not installed")

LINES = [
    "The king and the queen spoke of love and hate.\n",
    "My lord, the kings loved the good days and bad nights.\n",
    "Speak, and the lords will give what they took.\n",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt_cli")
    (root / "texts").mkdir()
    for index in range(3):
        (root / "texts" / f"part{index}.txt").write_text("".join(LINES[(index + j) % 3] for j in range(80)))
    command = ["gpt", "prepare", str(root / "texts"), "--out", str(root / "corpus"), "--vocab-size", "300"]
    assert main(command) == 0
    return root


TINY = ["--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "8",
        "--max-steps", "30", "--eval-every", "15", "--eval-batches", "1", "--lr", "0.01", "--min-lr", "0.001",
        "--warmup-steps", "3", "--device", "cpu", "--no-progress"]  # fmt: skip


def test_prepare_train_sample_analyze(corpus, capsys):
    meta = json.loads((corpus / "corpus" / "meta.json").read_text())
    assert meta["vocab_size"] == 300 and meta["documents"] == 3
    for head in ("standard", "harmonic"):
        out = corpus / f"run-{head}"
        command = ["gpt", "train", "--data", str(corpus / "corpus"), "--head", head, "--out", str(out)]
        assert main([*command, *TINY]) == 0
        assert "validation loss" in capsys.readouterr().out
        run = json.loads((out / "run.json").read_text())
        assert run["model"]["head"] == head and run["model"]["vocab_size"] == 300  # taken from the corpus
    assert main(["gpt", "sample", str(corpus / "run-harmonic"), "--prompt", "The king", "--tokens", "12",
                 "--num-samples", "2", "--seed", "3"]) == 0  # fmt: skip
    first = capsys.readouterr().out
    assert first.count("The king") == 2 and "-" * 40 in first
    main(["gpt", "sample", str(corpus / "run-harmonic"), "--prompt", "The king", "--tokens", "12",
          "--num-samples", "2", "--seed", "3"])  # fmt: skip
    assert capsys.readouterr().out == first  # seeded
    assert main(["gpt", "sample", str(corpus / "run-harmonic"), "--prompt", ""]) == 2
    assert "expected a prompt of at least one token" in capsys.readouterr().err
    runs = [str(corpus / "run-standard"), str(corpus / "run-harmonic")]
    rows = summary_rows(runs)
    for row, run in zip(rows, runs, strict=True):
        results = json.loads((corpus / run / "results.json").read_text())
        assert row["seeds"] == 1 and row["val_loss_mean"] == results["final_val_loss"] and row["lr"] == 0.01
    assert [row["head"] for row in rows] == ["standard", "harmonic"]
    assert [row["exponent"] for row in rows] == [None, 4.0]  # sqrt(n_embd = 16)
    doc = corpus / "doc.md"
    doc.write_text("text\n" + "\n".join(markers(SECTION)) + "\n")
    saved = corpus / "records"
    assert main(["gpt", "summary", *runs, "--markdown", "--results", str(saved), "--write", str(doc)]) == 0
    assert "| standard |" in capsys.readouterr().out
    lines = doc.read_text().splitlines()[2:-1]  # header, rule, one row per group
    written = [[cell.strip() for cell in line.split("|")[1:-1]][:3] for line in lines[2:]]
    assert written == [["standard", "-", "0.01 -> 0.001"], ["harmonic", "4", "0.01 -> 0.001"]]
    records = sorted(str(p) for p in saved.glob("*.json"))
    assert [p.rsplit("/", 1)[1] for p in records] == ["run-harmonic.json", "run-standard.json"]
    assert json.loads(Path(records[0]).read_text())["provenance"]["torch"] == torch.__version__
    assert summary_rows(records[::-1]) == rows  # the saved records alone give the same table
    (saved / "bad.json").write_text("{}")
    assert main(["gpt", "summary", str(saved / "bad.json")]) == 2
    assert "bad.json: expected a GPT run record" in capsys.readouterr().err
    assert main(["gpt", "summary", str(corpus / "corpus")]) == 2
    assert "expected a finished run" in capsys.readouterr().err
    assert main(["gpt", "analyze", *runs, "--out", str(corpus / "analysis"), "--num-pcs", "2", "3",
                 "--min-pairs", "2", "--rule", "last", "--no-plot"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    result = json.loads((corpus / "analysis" / "parallelograms.json").read_text())
    assert "random quadruples" in printed and result["config"]["num_pcs"] == [2, 3]
    assert {run["label"] for run in result["runs"]} == {"standard", "harmonic"}
    assert analysis_table(result) in printed
    # the analysis projects once on the top max(num_pcs) PCs; each k equals the direct computation
    model = GPT.from_pretrained(corpus / "run-harmonic" / "model")
    task = next(iter(result["tasks"]))
    ids, _ = pair_token_ids(
        lambda w: load_tokenizer(corpus / "corpus").encode(w).ids, ANALOGY_TASKS[task], "last"
    )
    quadruples = analogy_quadruples(len(ids), 10_000, 0)
    for k in (2, 3):
        direct = summarize(parallelogram_loss(model.wte.weight, ids, quadruples, num_pcs=k))
        assert result["tasks"][task]["harmonic"][str(k)] == pytest.approx(direct, rel=1e-9)


def test_stop_and_resume_from_the_command_line(corpus, capsys):
    out = corpus / "resumed"
    common = ["gpt", "train", "--data", str(corpus / "corpus"), "--out", str(out), *TINY]
    assert main([*common, "--stop-after-steps", "10"]) == 0
    assert "stopped after 10 of 30 steps" in capsys.readouterr().out
    assert main(common) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == 30


def test_recipes_are_valid_configs():
    for name in RECIPES:
        record = read_gpt_recipe(name)
        GPTConfig(**record["model"])
    standard = read_gpt_recipe("gpt2-small-owt-standard")
    harmonic = read_gpt_recipe("gpt2-small-owt-harmonic")
    assert (standard["train"]["lr"], harmonic["train"]["lr"]) == (6e-4, 6e-3)  # the paper's
    assert (standard["train"]["min_lr"], harmonic["train"]["min_lr"]) == (3e-5, 3e-4)
    assert standard["train"]["batch_size"] * standard["model"]["block_size"] == 491_520
    control = read_gpt_recipe("gpt2-small-owt-harmonic-equal-lr")
    assert control["model"]["head"] == "harmonic" and control["train"] == standard["train"]
    # the exponent measured best on the CPU sweep, 2 D (the released code's n_embd on d^2), in every recipe
    for name in ("shakespeare-cpu-harmonic", "gpt2-small-owt-harmonic", "gpt2-small-owt-harmonic-equal-lr"):
        model = GPTConfig(**read_gpt_recipe(name)["model"])
        assert model.exponent == 2 * model.n_embd


def test_cli_errors(tmp_path, capsys):
    assert main(["gpt", "train", "--out", str(tmp_path / "run")]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["gpt", "train", "--config", "nope", "--out", str(tmp_path / "run")]) == 2
    assert "--config must be one of" in capsys.readouterr().err
    assert main(["gpt", "sample", str(tmp_path)]) == 2
    assert "is not a saved GPT" in capsys.readouterr().err
    assert main(["gpt", "prepare", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
