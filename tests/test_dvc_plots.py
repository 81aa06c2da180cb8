"""`msae plots template`: the offline page for `dvc plots show` inlines vega (no network) and is
not rewritten when unchanged."""

from __future__ import annotations

import os

from msae.dvc_plots import LIBRARIES, write_offline_template


def test_template_inlines_vega_and_is_not_rewritten_when_unchanged(tmp_path):
    path = write_offline_template(tmp_path / "offline.html")
    page = path.read_text()
    assert "{plot_divs}" in page and "<script src" not in page and "https://" not in page.split("<script>")[0]
    assert all(f"/* {name} */" in page for name in LIBRARIES)
    os.utime(path, ns=(1, 1))
    write_offline_template(path)
    assert path.stat().st_mtime_ns == 1  # identical: left alone
    path.write_text("old")
    write_offline_template(path)
    assert path.read_text() == page
