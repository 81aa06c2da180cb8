"""Drive the browser in headless Chromium (Debian's /usr/bin/chromium through the PyPI
`playwright` driver; Playwright never downloads a browser here): used by the browser test and to
take the screenshot in docs/.

    python -m msae.report.browser.check results/report/browser/index.html docs/browser-screenshot.png \
        --state 'concepts?name=red&sel=6.596'
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing_requirement() -> str | None:
    """Why a headless run is impossible here (None when it is possible)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the PyPI package `playwright` is not installed (scripts/setup-browser.sh)"
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        return f"{CHROMIUM} is missing (apt-get install chromium; scripts/setup-browser.sh)"
    return None


@contextmanager
def open_page(index_html: Path, width: int = 1400, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A Playwright page showing `index_html` from disk, and the list its console errors and
    uncaught exceptions are collected into."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(10_000)

            def console(msg: Any) -> None:
                if msg.type == "error":
                    errors.append(f"console error: {msg.text}")

            page.on("console", console)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(Path(index_html).resolve().as_uri())
            page.wait_for_selector("#results tbody tr")
            yield page, errors
        finally:
            browser.close()


def screenshot(index_html: Path, out: Path, state: str = "", width: int = 1400, height: int = 1000) -> Path:
    """Save a PNG of the browser in `state` (the URL hash, e.g. 'concepts?name=red&sel=6.596':
    every latent named red, latent 596 of the 7th run open); default: the first result opened."""
    with open_page(index_html, width, height) as (page, errors):
        if state:
            page.evaluate("hash => { location.hash = hash; }", state)
        if "sel=" not in state:
            page.click("#results tbody tr")
        page.wait_for_selector("article.latent .gallery img")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out))
        if errors:
            raise RuntimeError("; ".join(errors))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index_html", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--state", default="", help="URL hash to show, e.g. 'concepts?name=red&sel=6.596'")
    args = parser.parse_args()
    print(screenshot(args.index_html, args.out, args.state))


if __name__ == "__main__":
    main()
