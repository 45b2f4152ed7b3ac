"""The language-model monosemanticity experiment: its table from records, and one tiny run end to end."""

import json
import shutil

import numpy as np
import pytest
import torch

from harmono.experiments.lm.monosemanticity import LMMonoConfig
from harmono.experiments.lm.tables import SECTION, lm_table, read_records


def record(model, seed, neurons, sae, mono, r2=0.5, ce=0.8):
    first = {"mono": {"mean": sae}, "mono_tokens": {"mean": 0.1}, "r2": r2, "lm": {"ce_recovered": ce}}
    second = {
        "mono": {"mean": mono},
        "mono_tokens": {"mean": 0.2},
        "r2": r2 - 0.1,
        "lm": {"ce_recovered": ce - 0.1},
    }
    measured = {
        "neurons": {"mean": neurons},
        "neurons_tokens": {"mean": 0.05},
        "sae": first,
        "sae_mono": second,
    }
    return {"model": f"harmono-gpt/{model}", "run": f"{model}-s{seed}", "layers": {"1": measured}}


def test_the_table_pools_seeds_per_head_and_block(tmp_path):
    for seed, value in enumerate((0.2, 0.3)):
        (tmp_path / f"standard-s{seed}.json").write_text(
            json.dumps(record("standard", seed, value, 0.4, 0.5))
        )
    (tmp_path / "harmonic-s0.json").write_text(json.dumps(record("harmonic", 0, 0.6, 0.7, 0.8)))
    lines = lm_table(read_records(tmp_path)).splitlines()
    assert lines[0].startswith("| model | block | models | MonoScore, units |")
    expected = (
        "| GPT, harmonic head | 1 | 1 | 0.6000 | 0.7000 | 0.8000 | 0.0500 | 0.1000 | 0.2000 | 0.500 | 0.400 |"
    )
    assert lines[2] == expected + " 0.800 | 0.700 |"
    assert lines[3].startswith("| GPT, standard head | 1 | 2 | 0.2500 ± 0.0707 | 0.4000 ± 0.0000 |")
    readme = tmp_path / "doc.md"
    readme.write_text(f"a\n<!-- {SECTION}:begin -->\nold\n<!-- {SECTION}:end -->\nb\n")
    from harmono.cli import main

    (tmp_path / "doc.md").rename(tmp_path / "doc.txt")
    assert main(["lm", "table", str(tmp_path), "--write", str(tmp_path / "doc.txt")]) == 0
    assert "| GPT, harmonic head | 1 | 1 | 0.6000" in (tmp_path / "doc.txt").read_text()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"bad.json: expected a language-model monosemanticity record"):
        read_records(tmp_path)


def tiny_run(tmp_path, n_layer):
    """``(gpt run folder, corpus folder)``: a random harmonic GPT on a tiny corpus, or skip without MiniLM."""
    pytest.importorskip("transformers", reason="transformers is not installed (harmono[encoders])")
    from harmono.encoders.sentence import minilm_folder

    try:
        minilm_folder()
    except ModuleNotFoundError as err:
        pytest.skip(str(err))
    from harmono.data.text import prepare_corpus
    from harmono.models.gpt import GPT, GPTConfig

    rng = np.random.default_rng(0)
    words = ["king", "queen", "sword", "crown", "love", "night", "day", "death", "war", "peace"]
    documents = {f"d{i}": " ".join(rng.choice(words, 400)) for i in range(3)}
    prepare_corpus(documents, tmp_path / "corpus", vocab_size=300, val_fraction=0.5)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=n_layer, n_head=2, n_embd=16, head="harmonic")
    folder = GPT(config).save_pretrained(tmp_path / "gpt" / "model")
    shutil.copy(tmp_path / "corpus" / "tokenizer.json", folder / "tokenizer.json")
    return tmp_path / "gpt", tmp_path / "corpus"


def test_one_tiny_model_end_to_end(tmp_path):
    from harmono.experiments.lm.monosemanticity import LMMonoConfig, measure_model

    gpt, corpus = tiny_run(tmp_path, 2)
    protocol = LMMonoConfig(layers=(1,), context=32, train_tokens=256, val_tokens=128, d_sae=32, k=4,
                            epochs=1, batch_size=64, ce_contexts=2, device="cpu")  # fmt: skip
    result = measure_model(gpt, corpus, tmp_path / "work", 0, protocol, progress=False)
    layer = result["layers"]["1"]
    assert result["model"] == "harmono-gpt/harmonic" and result["protocol"]["d_sae"] == 32
    assert layer["neurons"]["num_latents"] == 64 and 0 <= layer["neurons"]["mean"] <= 1
    assert layer["neurons_tokens"]["num_latents"] == 64 and layer["sae"]["mono_tokens"]["num_latents"] == 32
    for name in ("sae", "sae_mono"):
        assert (
            layer[name]["rows"] == 128
            and layer[name]["l0"] <= 4
            and np.isfinite(layer[name]["lm"]["ce_clean"])
        )
    again = measure_model(gpt, corpus, tmp_path / "work", 0, protocol, progress=False)
    assert json.dumps(again["layers"]) == json.dumps(result["layers"])  # resumed: the same stores and SAEs


def test_the_gpt2_recipe_runs_its_blocks_on_the_cpu_at_a_tiny_size(tmp_path):
    from harmono.cli import main

    gpt, corpus = tiny_run(tmp_path, 12)
    tiny = ["--context", "32", "--train-tokens", "256", "--val-tokens", "128", "--d-sae", "32", "--k", "4",
            "--epochs", "1", "--batch-size", "64", "--ce-contexts", "2", "--device", "cpu"]  # fmt: skip
    argv = ["lm", "monosemanticity", str(gpt), "--corpus", str(corpus), "--config", "gpt2-small-owt", *tiny,
            "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((tmp_path / "results" / "gpt.json").read_text())
    assert sorted(record["layers"]) == ["11", "6"]  # the recipe's blocks
    assert record["protocol"]["lr"] == 0.0002 and record["protocol"]["d_sae"] == 32  # recipe, then options
    with pytest.raises(ValueError, match="layers must be a non-empty list of block indices"):
        LMMonoConfig(layers=[])


def test_a_finetuned_classifier_joins_the_table_with_its_penultimate_units(tmp_path):
    from harmono.experiments.lm.monosemanticity import classifier_record, is_classifier_run

    for seed, (head, score) in enumerate((("linear", 0.41), ("harmonic", 0.52), ("harmonic", 0.56))):
        run = tmp_path / f"{head}-s{seed}"
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"model": {"backbone": "efficientnet-lite0", "head": head}}))
        results = {
            "val_accuracy": 0.8,
            "val_monoscore": score - 0.1,
            "val_monoscore_alive": score,
            "val_dead_units": 3,
        }
        (run / "results.json").write_text(json.dumps(results))
        assert is_classifier_run(run)
        (tmp_path / "records").mkdir(exist_ok=True)
        (tmp_path / "records" / f"{run.name}.json").write_text(json.dumps(classifier_record(run)))
    gpt_run = tmp_path / "gpt"
    gpt_run.mkdir()
    (gpt_run / "run.json").write_text(json.dumps({"model": {"n_layer": 4, "head": "harmonic"}}))
    assert not is_classifier_run(gpt_run) and not is_classifier_run(tmp_path / "nothing")
    lines = lm_table(read_records(tmp_path / "records")).splitlines()
    dashes = " | ".join(["–"] * 9)
    assert (
        lines[2]
        == f"| efficientnet-lite0 classifier, cross-entropy head | penultimate | 1 | 0.4100 | {dashes} |"
    )
    assert lines[3].startswith(
        "| efficientnet-lite0 classifier, harmonic head | penultimate | 2 | 0.5400 ± 0.0283 | – |"
    )
