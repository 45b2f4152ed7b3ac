"""The report in a real browser: headless Chromium renders it without console errors, and the latent
browser sorts, filters and pages. Skipped where Playwright or Chromium is missing."""

import importlib.util

import pytest

from harmono.report.build import write_report
from harmono.report.screenshot import chromium_executable, launch_options, screenshot

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is not None and chromium_executable() is None,
        reason="no Chromium on PATH (Debian: apt-get install chromium)",
    ),
]


@pytest.fixture()
def page(sae_run, tmp_path):
    from playwright.sync_api import sync_playwright

    html = write_report(sae_run[0], tmp_path / "report.html")
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**launch_options())
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type in ("error", "warning") else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        yield page, errors, tmp_path
        browser.close()


def column(page, index):
    return page.eval_on_selector_all(
        "#latent-table tbody tr", f"rows => rows.map(r => r.children[{index}].textContent)"
    )


def numbers(cells):
    return [float(c) for c in cells if c != "\u2013"]


def test_report_renders_without_errors_and_the_latent_browser_sorts(page):
    page, errors, tmp_path = page
    assert page.title().startswith("SAE run")
    assert page.locator("figure img").count() >= 2
    assert all(
        page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    )
    scores = numbers(column(page, 2))
    assert len(scores) == 40 and scores == sorted(scores, reverse=True), (
        "opens sorted by MonoScore, highest first"
    )
    page.click("#latent-table th[data-key=s]")
    assert numbers(column(page, 2)) == sorted(scores)
    page.click("#latent-table th[data-key=f]")
    frequencies = numbers(column(page, 5))
    assert frequencies == sorted(frequencies, reverse=True) and len(set(frequencies)) > 1
    page.click("#latent-table th[data-key=c]")
    classes = column(page, 6)
    assert classes == sorted(classes, reverse=True)
    assert page.locator("#latent-table tbody .thumb").count() > 0
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert errors == []


def test_latent_browser_filters_and_pages(page):
    page, errors, _ = page
    first_class = column(page, 6)[0]
    page.select_option("#f-class", first_class)
    assert set(column(page, 6)) == {first_class}
    page.select_option("#f-class", "all")
    page.fill("#f-latent", "7")
    assert column(page, 1) == ["7"]
    page.fill("#f-latent", "")
    page.fill("#f-freq", "0.2")
    assert all(float(f) >= 0.2 for f in column(page, 5))
    assert errors == []


def test_screenshot_helper_saves_a_png(sae_run, tmp_path):
    html = write_report(sae_run[0], tmp_path / "report.html")
    png = screenshot(html, tmp_path / "shot.png", height=800)
    assert png.read_bytes()[:4] == b"\x89PNG"
