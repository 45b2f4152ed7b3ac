"""``harmono report RUN_DIR``: the HTML report of a demo, an SAE run or a toy run or suite.

The kind of directory is recognised by what it holds:

- a demo: ``demo.json`` (``harmono demo``);
- an evaluated SAE: ``evaluation.json`` (``harmono sae eval`` of a harmono run or of any library's SAE);
- a toy suite: sub-folders holding ``results.json`` of toy runs (``harmono toy suite``), or one toy run.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from harmono.analysis.latent_table import LatentTable, read_latent_table
from harmono.core.io import read_json, write_atomically
from harmono.report.html import (
    Claims,
    Command,
    Figure,
    LatentBrowser,
    Report,
    Section,
    Table,
    Text,
    render_html,
)
from harmono.report.latents import browser_payload
from harmono.sae.evaluate import EVALUATION_FILE

logger = logging.getLogger("harmono")

REPORT_FILE = "report.html"


def run_kind(run_dir: str | Path) -> str:
    """``"demo"``, ``"sae"`` or ``"toy"``: what ``run_dir`` holds (see the module notes)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"expected a run directory, got {run_dir}, which is not a directory")
    if (run_dir / "demo.json").is_file():
        return "demo"
    if (run_dir / EVALUATION_FILE).is_file():  # harmono's SAE run or the evaluation of any SAE
        return "sae"
    if (run_dir / "sae" / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} is an SAE run without {EVALUATION_FILE}: "
            f"run `harmono sae eval {run_dir} --features STORE` first"
        )
    if _toy_run_dirs(run_dir):
        return "toy"
    raise ValueError(
        f"expected a demo (demo.json), an evaluated SAE ({EVALUATION_FILE}) or a toy run or suite "
        f"(results.json of toy runs) in {run_dir}, found none of them"
    )


def _toy_run_dirs(run_dir: Path) -> list[Path]:
    candidates = [run_dir] + sorted(p for p in run_dir.iterdir() if p.is_dir())
    found = []
    for candidate in candidates:
        path = candidate / "results.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except ValueError:  # not valid JSON, or not UTF-8
                continue
            if isinstance(record, dict) and {"task", "model", "seeds"} <= record.keys():
                found.append(candidate)
    return found


def _png(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _figure(path: Path, caption: str) -> list[Figure]:
    png = _png(path)
    return [Figure(png, caption)] if png is not None else []


def _rendered(plot, *args, **kwargs) -> bytes:
    buffer = io.BytesIO()
    plot(*args, buffer, **kwargs)
    return buffer.getvalue()


def toy_sections(suite_dir: Path, run_dirs: Sequence[Path] | None = None, command: str = "") -> list[Section]:
    """Tables (top-2 EV and grokking epochs beside the paper's) and figures of toy runs."""
    from harmono.experiments.harmonic.toy_suite import load_run, suite_figures
    from harmono.experiments.harmonic.toy_tables import suite_rows

    run_dirs = list(run_dirs) if run_dirs is not None else _toy_run_dirs(suite_dir)
    records = [load_run(d)[0] for d in run_dirs]
    figures = {name: suite_dir / name for name in ("ev_curves.png", "grokking.png", "embeddings_pca.png")}
    if not all(p.is_file() for p in figures.values()):
        suite_figures(suite_dir, records, run_dirs)
    ev_headers, ev_rows = suite_rows(records, "ev")
    grok_headers, grok_rows = suite_rows(records, "grokking")
    epochs = sorted({r["train"]["epochs"] for r in records})
    seeds = sorted({len(r["seeds"]) for r in records})
    blocks = [
        Text(
            "The paper's claim: the token embeddings of harmonic models organise into the task's "
            "geometry (a lattice, a circle), so that the top two principal components explain nearly all "
            "their variance. Each cell is the median [min-max] over seeds, the paper's value (20 seeds, "
            "7,000 epochs) in parentheses. "
            f"Here: {'/'.join(map(str, seeds))} seeds, {'/'.join(map(str, epochs))} epochs."
        ),
        *_figure(
            figures["embeddings_pca.png"], "2-D PCA of the token embeddings (the seed with the median EV)."
        ),
        Table(ev_headers, ev_rows, "top-2 explained variance of the embeddings, % (paper)"),
        *_figure(
            figures["ev_curves.png"], "Cumulative explained variance of the embeddings by number of PCs."
        ),
        Table(grok_headers, grok_rows, "median epoch: train accuracy > 0.9 → test accuracy > 0.9 (paper)"),
        *_figure(figures["grokking.png"], "Per seed: first epoch of 20 in a row above 0.9, train vs test."),
    ]
    if command:
        blocks.append(Command(command))
    return [Section("Harmonic loss: modular addition and the in-context lattice", blocks, "toy-suite")]


def _drawn_or_rendered(path: Path | None, render) -> bytes | None:
    """The PNG at ``path`` when it exists, else ``render(buffer)``'s (None when it draws nothing)."""
    png = _png(path) if path is not None else None
    if png is not None:
        return png
    buffer = io.BytesIO()
    return buffer.getvalue() if render(buffer) is not None else None


def sae_sections(
    tables: Sequence[LatentTable], run_dirs: Sequence[Path], command: str = "", figure_dir: Path | None = None
) -> list[Section]:
    """Comparison table, MonoScore histogram, training curves and galleries of evaluated SAEs.

    ``figure_dir`` holds the histogram and galleries already drawn by
    ``write_sae_figures`` (the demo's ``sae`` step); missing ones are drawn here.
    """
    from harmono.analysis.latent_figures import HISTOGRAM_FILE, gallery_file, plot_gallery
    from harmono.analysis.latent_plots import plot_score_histograms
    from harmono.sae.compare import METRICS, compare_rows

    rows = [(table.name, *row[1:]) for table, row in zip(tables, compare_rows(list(run_dirs)), strict=True)]
    headers = ["SAE", "arch", "mono_coef", "n", *(title for title, _, _ in METRICS)]
    blocks = [
        Table(
            headers, rows, "on the evaluation set; MonoScore over alive latents, and with dead latents as 0"
        ),
        Figure(
            _drawn_or_rendered(
                figure_dir / HISTOGRAM_FILE if figure_dir else None,
                lambda out: plot_score_histograms({t.name: t.scores() for t in tables}, out),
            ),
            "MonoScore of every alive latent: MonoLoss moves the distribution to the right.",
        ),
    ]
    curves = _training_curves(run_dirs, [t.name for t in tables])
    if curves is not None:
        blocks.append(curves)
    for table in tables:
        drawn = figure_dir / gallery_file(table.name) if figure_dir else None
        png = _drawn_or_rendered(drawn, lambda out, table=table: plot_gallery(table, out))
        if png is not None:
            blocks.append(Figure(png, f"{table.name}: top-activating samples, strongest first."))
        elif table.texts is not None:
            note = f"{table.name}: the latent browser below shows each latent's top tokens in context"
            blocks.append(Text(f"{note} ({table.images_note}), shaded by the latent's activation."))
        else:
            blocks.append(Text(f"{table.name}: no thumbnails ({table.images_note})."))
    if command:
        blocks.append(Command(command))
    return [Section("MonoLoss: sparse autoencoders", blocks, "sae")]


def _training_curves(run_dirs: Sequence[Path], names: Sequence[str]) -> Figure | None:
    from harmono.analysis.latent_plots import plot_training_terms
    from harmono.training.runs import read_metric_log

    logs = {}
    for run_dir, name in zip(run_dirs, names, strict=True):
        records = [r for r in read_metric_log(run_dir) if "step" in r and "reconstruction" in r]
        if records:
            logs[name] = records
    if not logs:
        return None
    terms = [t for t in ("reconstruction", "mono", "aux", "l0") if any(t in r[0] for r in logs.values())]
    png = _rendered(plot_training_terms, logs, terms)
    return Figure(png, "Training: each loss term as logged (metrics.jsonl), and L0.")


def _claims(summary: dict) -> Claims:
    return Claims([(claim["text"], claim["holds"]) for claim in summary["claims"]])


def _step(run_dir: Path, name: str) -> dict | None:
    path = run_dir / name / "step.json"
    return read_json(path, "a finished demo step", ("summary",))["summary"] if path.is_file() else None


def demo_report(run_dir: Path) -> Report:
    """The report of a ``harmono demo`` directory."""
    from harmono.experiments.demo import SAE_NAMES
    from harmono.report.demo_tables import (
        demo_headline,
        mono_toy_rows,
        prototype_rows,
        sae_claims,
        suite_claims,
        suite_summary_rows,
        toy_points_rows,
    )

    demo = read_json(run_dir / "demo.json", "a demo record", ("steps",))
    steps = {name: _step(run_dir, name) for name in demo["steps"]}
    sections: list[Section] = []
    if steps.get("toy-points"):
        sections.append(Section("Harmonic loss: the paper's 2-D toy cases", [
            Text("One class per point. A harmonic head's logits are distances to class centers: the centers "
                 "move onto their points and stop there. A linear head's weights grow without bound, and the "
                 "centre point of five_points, where every linear logit is 0, cannot be fitted."),
            *_figure(run_dir / "toy-points" / "toy_points.png", "Decision regions; black dots: data points; "
                     "crosses: learned weight rows (the centers of the harmonic head)."),
            Table(*toy_points_rows(steps["toy-points"])),
            _claims(steps["toy-points"]),
        ], "toy-points"))  # fmt: skip
    if steps.get("toy-suite"):
        headers, rows = suite_summary_rows(steps["toy-suite"])
        suite = toy_sections(run_dir / "toy-suite")
        ours = [Table(headers, rows, "this demo's models"), Claims(suite_claims(steps["toy-suite"]))]
        suite[0] = Section(suite[0].title, [*ours, *suite[0].blocks], "toy-suite")
        sections += suite
    if steps.get("prototypes"):
        sections.append(Section("Harmonic loss: Fashion-MNIST prototypes", [
            Text("One linear layer, 784 → 10, trained with cross-entropy and as a harmonic layer (n = 56). "
                 "The harmonic weights are class centers in pixel space: they look like the garments."),
            *_figure(run_dir / "prototypes" / "prototypes.png",
                     "Weights per class; thresholded rows: w < 0.01 in yellow, as in the paper."),
            Table(*prototype_rows(steps["prototypes"])),
        ], "prototypes"))  # fmt: skip
    if steps.get("mono-toy"):
        sections.append(Section("MonoScore: what it measures", [
            Text("Synthetic latents of known meaning on 10 embedding clusters: a latent that fires on one "
                 "concept scores the within-cluster similarity, one that fires at random scores the mean "
                 "similarity of the set, and a two-concept latent lies between."),
            Table(*mono_toy_rows(steps["mono-toy"])),
            _claims(steps["mono-toy"]),
        ], "mono-toy"))  # fmt: skip
    browser = None
    if steps.get("sae"):
        evaluations = steps["sae"]["evaluations"]
        names = [n for n in SAE_NAMES if n in evaluations]
        run_dirs = [run_dir / "sae" / evaluations[n]["run"] for n in names]
        tables = [read_latent_table(d, n) for d, n in zip(run_dirs, names, strict=True)]
        intro = Text(
            "BatchTopK sparse autoencoders on EfficientNet-Lite0 features (real ImageNet weights) of "
            "Fashion-MNIST, trained without and with MonoLoss, evaluated on held-out test images. The "
            "paper's claim: MonoLoss raises the MonoScore and the class purity of the latents at a small "
            "cost in reconstruction (R²)."
        )
        section = sae_sections(tables, run_dirs, figure_dir=run_dir / "sae")[0]
        section = Section(section.title, [Claims(sae_claims(steps["sae"])), *section.blocks])
        sections.append(
            Section("MonoLoss: sparse autoencoders on real encoder features", [intro, *section.blocks], "sae")
        )
        browser = LatentBrowser(*browser_payload(tables))
    skipped = demo.get("skipped") or {}
    if skipped:
        sections.append(
            Section("Skipped steps", [Text(f"{name}: {why}") for name, why in skipped.items()], "skipped")
        )
    sections.append(Section("Reproduce", [Command(demo.get("command", "harmono demo"))], "reproduce"))
    return Report(
        "harmono demo",
        "Harmonic loss and MonoLoss on a laptop: the papers' claims, measured in this run",
        demo_headline(steps),
        sections,
        browser,
        source=run_dir.name,
    )


def sae_report(run_dir: Path, features: str | Path | None = None) -> Report:
    """The report of one evaluated SAE run."""
    table = read_latent_table(run_dir, run_dir.name, features)
    summary = table.summary
    headline = [
        ("R²", f"{summary['r2']:.4f}"),
        ("L0", f"{summary['l0']:.1f}"),
        ("dead latents", f"{100 * summary['dead_fraction']:.1f}%"),
        ("mean MonoScore", f"{summary['mono']['mean']:.4f}"),
        ("class purity", f"{summary['purity_binary']:.3f}"),
    ]
    command = f"harmono sae eval {run_dir} --features STORE\nharmono report {run_dir}"
    return Report(
        f"SAE run {run_dir.name}",
        f"{summary['rows']} evaluation samples, {len(table.latents)} latents",
        headline,
        sae_sections([table], [run_dir], command),
        LatentBrowser(*browser_payload([table])),
        source=run_dir.name,
    )


def toy_report(run_dir: Path) -> Report:
    """The report of a toy suite (or one toy run)."""
    run_dirs = _toy_run_dirs(run_dir)
    return Report(
        f"Toy runs in {run_dir.name}",
        f"{len(run_dirs)} configurations of the harmonic-loss paper's algorithmic tasks",
        (),
        toy_sections(run_dir, run_dirs, command=f"harmono report {run_dir}"),
        source=run_dir.name,
    )


def build_report(run_dir: str | Path, features: str | Path | None = None) -> Report:
    """The ``Report`` of ``run_dir``, whatever kind it is (``features``: SAE runs only)."""
    run_dir = Path(run_dir)
    kind = run_kind(run_dir)
    if features is not None and kind != "sae":
        raise ValueError(f"--features applies to SAE runs only; {run_dir} is a {kind} directory")
    if kind == "demo":
        return demo_report(run_dir)
    if kind == "sae":
        return sae_report(run_dir, features)
    return toy_report(run_dir)


def write_report(
    run_dir: str | Path, out: str | Path | None = None, features: str | Path | None = None
) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``), atomically."""
    report = build_report(run_dir, features)
    out = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    text = render_html(report).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(out, lambda handle: handle.write(text))
