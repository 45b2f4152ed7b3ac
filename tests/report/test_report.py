"""The HTML report: kinds of run directory, self-contained page, escaping, thumbnails that match the data."""

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from harmono.analysis.latent_table import read_latent_table
from harmono.cli import main
from harmono.experiments.harmonic.toy_suite import run_config, run_name
from harmono.report.build import build_report, run_kind, write_report
from harmono.report.html import Figure, Report, Section, Table, Text, render_html
from harmono.report.latents import browser_payload
from harmono.report.sprite import make_sprite
from harmono.sae.top_activations import load_top_activations


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_sprite_tiles_round_trip_and_resize():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(7)]
    sprite = make_sprite(images, tile=28, columns=3)
    sheet = decode(sprite.png)
    assert (sprite.columns, sprite.rows, sheet.shape) == (3, 3, (84, 84))
    for i, image in enumerate(images):
        top, left = (i // 3) * 28, (i % 3) * 28
        np.testing.assert_array_equal(sheet[top : top + 28, left : left + 28], image)
    coloured = make_sprite([images[0], rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)], tile=20)
    assert decode(coloured.png).shape == (20, 40, 3)
    with pytest.raises(ValueError, match=r"uint8 images of shape \(H, W\) or \(H, W, 3\), got float64"):
        make_sprite([np.zeros((4, 4))])
    with pytest.raises(ValueError, match="at least one image"):
        make_sprite([])


def test_text_is_escaped_and_the_page_loads_nothing_from_outside():
    evil = '<script>alert("x")</script>'
    png = make_sprite([np.zeros((4, 4), np.uint8)], tile=4).png
    report = Report(
        evil,
        evil,
        [(evil, evil)],
        [Section(evil, [Text(evil), Table([evil], [[evil]], evil), Figure(png, evil)])],
    )
    page = render_html(report)
    assert evil not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "data:image/png;base64," in page


def test_latent_payload_shows_each_latents_strongest_images_in_order(sae_run):
    run, store, images = sae_run
    table = read_latent_table(run)
    payload, sprite = browser_payload([table])
    values, rows = load_top_activations(run / "top_activations.safetensors")
    sheet = decode(sprite.png)
    checked = 0
    for entry in payload["latents"]:
        expected = [int(r) for r in rows[entry["i"]] if r >= 0]
        assert len(entry["t"]) == len(expected)
        assert entry["v"] == sorted(entry["v"], reverse=True)
        for tile, row in zip(entry["t"], expected, strict=True):
            top, left = (tile // sprite.columns) * 28, (tile % sprite.columns) * 28
            np.testing.assert_array_equal(sheet[top : top + 28, left : left + 28], images.image(row))
            checked += 1
    assert checked > 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert [e["s"] for e in payload["latents"]] == [
        None if r["mono_score"] is None else round(r["mono_score"], 4) for r in evaluation["latents"]
    ]


def test_sae_report_from_the_cli(sae_run, tmp_path, capsys):
    run, store, _ = sae_run
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Latent browser" in page and "mean MonoScore" in page and "top-activating samples" in page
    data = json.loads(
        re.search(r'<script type="application/json" id="latent-data">(.*?)</script>', page).group(1)
    )
    assert len(data["latents"]) == 40 and data["sprite"]["tile"] == 28
    assert not (run / "report.html").exists(), "--out must be the only file written"


def test_sae_report_without_its_store_still_lists_latents(sae_run, tmp_path):
    run, _, _ = sae_run
    report = build_report(run, features=tmp_path / "moved-away")
    assert report.browser.sprite is None
    assert "cannot be opened" in report.browser.payload["notes"][0]
    assert all(entry["t"] == [] for entry in report.browser.payload["latents"])
    render_html(report)


def test_toy_suite_report(tmp_path):
    for task in ("lattice", "modadd"):
        for head in ("standard", "harmonic"):
            run_config(
                task,
                "mlp",
                head,
                tmp_path / run_name(task, "mlp", head),
                seeds=(0, 1),
                progress=False,
                epochs=2,
            )
    assert run_kind(tmp_path) == "toy"
    page = write_report(tmp_path).read_text()
    assert "top-2 explained variance" in page and "harmonic MLP (paper)" in page
    assert page.count("<figure>") == 3
    assert run_kind(tmp_path / run_name("lattice", "mlp", "harmonic")) == "toy"


def test_directories_that_are_no_run_are_refused_clearly(tmp_path, sae_run, capsys):
    with pytest.raises(ValueError, match="expected a demo .* found none of them"):
        run_kind(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        run_kind(tmp_path / "missing")
    (tmp_path / "unevaluated" / "sae").mkdir(parents=True)
    (tmp_path / "unevaluated" / "sae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="harmono sae eval"):
        run_kind(tmp_path / "unevaluated")
    (tmp_path / "demo.json").write_text(json.dumps({"steps": []}))
    assert main(["report", str(tmp_path), "--features", "x"]) == 2
    assert "--features applies to SAE runs only" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_top_activations_of_another_sae_are_refused(sae_run, tmp_path):
    import shutil

    from harmono.sae.top_activations import TopActivations

    run, _, _ = sae_run
    copy = shutil.copytree(run, tmp_path / "run")
    TopActivations(7, per_latent=2).save(copy / "top_activations.safetensors")
    with pytest.raises(ValueError, match="expected top activations of 40 latents, got 7"):
        read_latent_table(copy)


def test_a_store_whose_ids_are_not_the_datasets_gets_no_thumbnails(sae_run, tmp_path):
    from harmono.analysis.latent_table import store_images
    from harmono.features import FeatureStoreWriter

    _, _, images = sae_run
    with FeatureStoreWriter(tmp_path / "store", 2, {"dataset": images.name}, dtype="float32") as writer:
        writer.append(np.zeros((3, 2), np.float32), ["a", "b", "c"], [0, 0, 0])
    lookup, note = store_images(tmp_path / "store")
    assert lookup is None and "not those of dataset" in note and "'a'" in note
