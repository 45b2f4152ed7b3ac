"""Open a report in headless Chromium (through Playwright) and save a screenshot.

Playwright drives the system's Chromium (Debian's ``chromium`` package, or
the one ``$HARMONO_CHROMIUM`` names); where neither exists it falls back on
a browser installed by ``playwright install chromium``. Nothing is fetched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ENV = "HARMONO_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Flags for a headless Chromium on a machine without network or display (also as root)."""


def chromium_executable() -> str | None:
    """Path of the Chromium to drive: ``$HARMONO_CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on PATH."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        if not Path(named).is_file():
            raise FileNotFoundError(f"${CHROMIUM_ENV} names {named}, which is not a file")
        return named
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_options() -> dict:
    """Keyword arguments of Playwright's ``chromium.launch`` for this machine."""
    options: dict = {"args": list(CHROMIUM_ARGS)}
    executable = chromium_executable()
    if executable is not None:
        options["executable_path"] = executable
    return options


def screenshot(html: str | Path, png: str | Path, width: int = 1280, height: int = 2400) -> Path:
    """Render the page ``html`` at ``width`` x ``height`` CSS pixels and save it as ``png``.

    Raises
    ------
    ModuleNotFoundError
        When Playwright is not installed.
    RuntimeError
        When the page logs an error to the console or throws.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise ModuleNotFoundError(
            "screenshots need Playwright and Chromium: pip install playwright; apt-get install chromium"
        ) from err
    html, png = Path(html).resolve(), Path(png)
    if not html.is_file():
        raise FileNotFoundError(f"expected an HTML report, got {html}, which is not a file")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**launch_options())
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png))
        finally:
            browser.close()
    if errors:
        raise RuntimeError(f"{html} logged errors in Chromium: {errors}")
    return png
