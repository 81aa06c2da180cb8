#!/usr/bin/env bash
# Install what the concept browser's headless test needs: Debian's chromium and the PyPI
# `playwright` package (its Node driver only). Playwright must never download a browser of its
# own: the test launches /usr/bin/chromium through `executable_path`, so no network is needed at
# test time and the browser is the distribution's, updated by apt.
#
# Usage: scripts/setup-browser.sh [PYTHON]   (default: .venv/bin/python of this checkout)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${1:-$ROOT/.venv/bin/python}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

"$PYTHON" -m pip install --quiet playwright

# Smoke check: the driver starts and drives the system chromium headless.
"$PYTHON" - <<'PY'
from playwright.sync_api import sync_playwright

from msae.report.browser.check import CHROMIUM, CHROMIUM_ARGS

with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True)
    page = browser.new_page()
    page.set_content("<p id=ok>ok</p>")
    assert page.text_content("#ok") == "ok"
    print("playwright", "drives", CHROMIUM, browser.version)
    browser.close()
PY
