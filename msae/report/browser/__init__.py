"""A static concept browser written by the report stage: one page per alive latent of every run
(names, frequency, histogram, top and random images, nearest terms, Matryoshka level, validity and
why, matching latents of other runs), search and filters across runs, and the comparison view.
It opens from disk (file://), offline, with no server.

    from msae.report.browser import write_browser
    write_browser(out / "browser", runs, runs_dir=Path("results/sae"),
                  images=Path("results/embeddings/shapes/test_image.parquet"), figures=files)

Attributes load on first use, so the Snakefile can import `labels.gallery_labels` without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "write_browser": "msae.report.browser.site",
    "export_run": "msae.report.browser.export",
    "RunExport": "msae.report.browser.export",
    "gallery_labels": "msae.report.browser.labels",
}

__all__ = ["RunExport", "export_run", "gallery_labels", "write_browser"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
