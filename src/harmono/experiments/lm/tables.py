"""The table of the language-model monosemanticity experiment, from its records in ``results/lm/``.

One row per model kind (the GPT's head; the Fashion-MNIST classifier's head)
and block: MonoScore of the units (the GPT's MLP neurons, the classifier's
penultimate units), of the SAE without and with MonoLoss (means over live
units and latents), their R² and CE loss recovered; each cell ``mean ± std``
over the models (seeds) measured, with their count, "–" where a kind has no
such measure. A kind not yet measured is left out.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from harmono.core.io import read_json

SECTION = "lm-monosemanticity"
"""Name of the marked section the table goes into (:mod:`harmono.report.marked_sections`)."""
COLUMNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("MonoScore, units", ("neurons", "mean"), ".4f"),
    ("MonoScore, SAE", ("sae", "mono", "mean"), ".4f"),
    ("MonoScore, SAE + MonoLoss", ("sae_mono", "mono", "mean"), ".4f"),
    ("token MonoScore, units", ("neurons_tokens", "mean"), ".4f"),
    ("token MonoScore, SAE", ("sae", "mono_tokens", "mean"), ".4f"),
    ("token MonoScore, SAE + MonoLoss", ("sae_mono", "mono_tokens", "mean"), ".4f"),
    ("R², SAE", ("sae", "r2"), ".3f"),
    ("R², SAE + MonoLoss", ("sae_mono", "r2"), ".3f"),
    ("CE recovered, SAE", ("sae", "lm", "ce_recovered"), ".3f"),
    ("CE recovered, SAE + MonoLoss", ("sae_mono", "lm", "ce_recovered"), ".3f"),
)
"""Title, path into a layer's record, format."""


def read_records(folder: str | Path) -> list[dict]:
    """Every ``*.json`` record in ``folder`` (one per model), sorted by file name."""
    return [read_json(path, "a language-model monosemanticity record", ("model", "layers"), ("layers",))
            for path in sorted(Path(folder).glob("*.json"))]  # fmt: skip


def _value(layer: dict, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if not isinstance(layer, dict) or key not in layer:
            return None
        layer = layer[key]
    return float(layer)


def _label(model: str) -> str:
    return f"GPT, {model.split('/', 1)[1]} head" if model.startswith("harmono-gpt/") else model


def _cell(values: list[float | None], spec: str) -> str:
    if any(value is None for value in values):
        return "–"
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def lm_table(records: list[dict]) -> str:
    """The Markdown table of ``records`` (see the module notes)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        for layer, measured in record["layers"].items():
            groups.setdefault((record["model"], layer), []).append(measured)
    header = ["model", "block", "models", *(title for title, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (model, layer), members in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        cells = [_cell([_value(m, keys) for m in members], spec) for _, keys, spec in COLUMNS]
        lines.append("| " + " | ".join([_label(model), layer, str(len(members)), *cells]) + " |")
    return "\n".join(lines)
