"""A static, self-contained HTML page: figures, tables, claims and a latent browser.

Everything the page needs is inside the one file: figures and thumbnails as
``data:`` URIs, the style and the script inline. It opens from disk in any
browser, with no server and no network.
"""

from __future__ import annotations

import base64
import html
import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from harmono.core.version import __version__
from harmono.report.sprite import Sprite


@dataclass(frozen=True)
class Figure:
    """A PNG figure with its caption."""

    png: bytes
    caption: str


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped on output)."""

    text: str


@dataclass(frozen=True)
class Claims:
    """Checked statements: (text, holds) pairs."""

    items: Sequence[tuple[str, bool]]


@dataclass(frozen=True)
class Command:
    """A shell command that reproduces what the section shows."""

    text: str


Block = Figure | Table | Text | Claims | Command


@dataclass(frozen=True)
class Section:
    """A titled part of the report."""

    title: str
    blocks: Sequence[Block]
    anchor: str = ""


@dataclass(frozen=True)
class LatentBrowser:
    """Data of the latent browser (see ``harmono.report.latents.browser_payload``)."""

    payload: dict
    sprite: Sprite | None


@dataclass(frozen=True)
class Report:
    """The whole page."""

    title: str
    subtitle: str
    headline: Sequence[tuple[str, str]] = ()
    """Key numbers shown first: (label, value)."""
    sections: Sequence[Section] = ()
    browser: LatentBrowser | None = None
    source: str = ""
    """What the report was made from (shown in the footer)."""
    generated: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _asset(name: str) -> str:
    return importlib.resources.files("harmono.report").joinpath("assets", name).read_text(encoding="utf-8")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _anchor(section: Section, index: int) -> str:
    return section.anchor or f"section-{index}"


def _render_block(block: Block) -> str:
    if isinstance(block, Figure):
        return (
            f'<figure><img src="{_png_uri(block.png)}" alt="{_e(block.caption)}">'
            f"<figcaption>{_e(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Table):
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        caption = f"<caption>{_e(block.caption)}</caption>" if block.caption else ""
        table = f"{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        return f'<div class="table-wrap"><table class="data">{table}</table></div>'
    if isinstance(block, Text):
        return f"<p>{_e(block.text)}</p>"
    if isinstance(block, Claims):
        items = "".join(
            f'<li class="holds"><span>holds</span> {_e(text)}</li>'
            if holds
            else f'<li class="fails"><span>does not hold</span> {_e(text)}</li>'
            for text, holds in block.items
        )
        return f'<ul class="claims">{items}</ul>'
    if isinstance(block, Command):
        return f"<pre><code>{_e(block.text)}</code></pre>"
    raise TypeError(
        f"expected a report block (Figure, Table, Text, Claims, Command), got {type(block).__name__}"
    )


def _json_script(element_id: str, data: object) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _render_browser(browser: LatentBrowser) -> str:
    sprite = ""
    if browser.sprite is not None:
        sprite = f".thumb{{background-image:url({_png_uri(browser.sprite.png)})}}"
    return f"""
<section id="latents"><h2>Latent browser</h2>
<p class="hint">Every latent of every SAE: click a column title to sort (again to reverse), filter with
the controls. MonoScore is the activation-weighted mean similarity of the samples a latent fires on;
purity is the share of its firing (binary) or of its activation mass (weighted) in its dominant class;
frequency is the share of samples it fires on. Thumbnails: its strongest activations, strongest first
(hover for the activation).</p>
<div class="controls">
<label>SAE <select id="f-model"></select></label>
<label>dominant class <select id="f-class"></select></label>
<label>min frequency <input id="f-freq" type="number" min="0" max="1" step="0.001" value="0"></label>
<label>latent <input id="f-latent" type="search" placeholder="number" size="7"></label>
<label><input id="f-dead" type="checkbox" checked> hide dead</label>
<span id="count" class="count"></span>
<button id="prev" type="button">previous</button><button id="next" type="button">next</button>
</div>
<p class="hint" id="notes"></p>
<div class="table-wrap"><table id="latent-table" class="data latents"><thead><tr>
<th data-key="m">SAE</th><th data-key="i">latent</th><th data-key="s">MonoScore</th>
<th data-key="pb">purity</th><th data-key="pw">weighted purity</th><th data-key="f">frequency</th>
<th data-key="c">dominant class</th><th>top-activating samples</th></tr></thead><tbody></tbody></table></div>
<style>{sprite}</style>
{_json_script("latent-data", browser.payload)}
<script>{_asset("latent_browser.js")}</script>
</section>"""


def render_html(report: Report) -> str:
    """The complete HTML document of ``report``."""
    toc = "".join(f'<a href="#{_anchor(s, i)}">{_e(s.title)}</a>' for i, s in enumerate(report.sections))
    if report.browser is not None:
        toc += '<a href="#latents">Latent browser</a>'
    cards = "".join(
        f'<div class="card"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'
        for label, value in report.headline
    )
    sections = "".join(
        f'<section id="{_anchor(s, i)}"><h2>{_e(s.title)}</h2>'
        + "".join(_render_block(b) for b in s.blocks)
        + "</section>"
        for i, s in enumerate(report.sections)
    )
    source = f" &middot; from {_e(report.source)}" if report.source else ""
    browser = _render_browser(report.browser) if report.browser is not None else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report.title)}</title>
<link rel="icon" href="data:,">
<style>{_asset("report.css")}</style></head>
<body><header><h1>{_e(report.title)}</h1><p class="subtitle">{_e(report.subtitle)}</p>
<nav>{toc}</nav></header>
<main>{f'<div class="cards">{cards}</div>' if cards else ""}{sections}{browser}</main>
<footer>harmono {_e(__version__)} &middot; generated {_e(report.generated)}{source}</footer>
</body></html>
"""
