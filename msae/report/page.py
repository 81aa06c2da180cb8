"""index.html: one offline page with the tables, the figures and links to every stage's pictures.

The report's own figures are embedded as data URIs (the page survives being copied alone);
galleries and probe figures of other stages are linked relatively, so they must stay beside it
under results/.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from msae.layout import BROWSER_DIR, HEADLINE_DIR, INDEX_FILE
from msae.report.collect import RunResults, flatten_numbers
from msae.report.table import tables_html

PER_RUN = ("curves/", f"{HEADLINE_DIR}/")  # one file per run: linked where they are explained, not in the bar
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1760px;padding:0 16px;color:#1b1f24}
h1{margin-bottom:4px}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
nav a{margin-right:14px}
table.results{border-collapse:collapse;margin:12px 0 4px;font-size:13px;font-variant-numeric:tabular-nums;display:block;overflow-x:auto;max-width:100%}
table.results caption{text-align:left;font-weight:600;padding-bottom:6px}
table.results th,table.results td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap}
table.results thead th{background:#f6f8fa;text-align:center;cursor:help}
table.results tbody th{text-align:left;font-weight:600}
table.results td.best{background:#dafbe1}
.desc{font-weight:400;color:#57606a;font-size:12px}
.note{color:#57606a;font-size:12px;max-width:1100px}
img.figure{max-width:min(100%,1150px);border:1px solid #d0d7de}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0;max-width:460px}.grid img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:12px;color:#57606a}
table.kv{border-collapse:collapse;font-size:12px}table.kv td{padding:1px 8px;border-bottom:1px solid #eee}
table.kv td:last-child{text-align:right;font-variant-numeric:tabular-nums}
.run{margin:14px 0 22px}
.lead{font-size:16px;background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:8px 12px;max-width:1100px}
"""


def html_document(title: str, body: str) -> str:
    """A complete offline HTML page (inline CSS, no scripts, no network)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def relative_href(target: Path, out: Path) -> str:
    """A URL-quoted link from the report directory to `target`."""
    return quote(Path(os.path.relpath(target.resolve(), out.resolve())).as_posix())


def _key_values(numbers: dict[str, float | int]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v if isinstance(v, int) else f'{v:.4g}'}</td></tr>"
        for k, v in numbers.items()
    )
    return f'<table class="kv">{rows}</table>'


def _thumbs(images: Sequence[Path], out: Path, limit: int, link_rest: bool = True) -> str:
    """Up to `limit` linked thumbnails; the rest as links (or only counted, for big galleries)."""
    figures = [
        f'<figure><a href="{relative_href(p, out)}"><img src="{relative_href(p, out)}" alt="{html.escape(p.name)}"></a>'
        f"<figcaption>{html.escape(p.name)}</figcaption></figure>"
        for p in images[:limit]
    ]
    rest = images[limit:]
    if not rest:
        more = ""
    elif link_rest:
        more = (
            '<p class="note">More: '
            + " · ".join(f'<a href="{relative_href(p, out)}">{html.escape(p.name)}</a>' for p in rest)
            + "</p>"
        )
    else:
        more = f'<p class="note">{len(rest)} more on the gallery page.</p>'

    return f'<div class="grid">{"".join(figures)}</div>{more}'


def _concepts_section(runs: Sequence[RunResults], out: Path) -> str:
    parts = []
    for run in runs:
        if run.concepts_dir is None:
            continue
        index = run.concepts_dir / "index.html"
        link = f' · <a href="{relative_href(index, out)}">gallery page</a>' if index.is_file() else ""
        galleries = (
            sorted((run.concepts_dir / "galleries").glob("*.png")) if (run.concepts_dir / "galleries").is_dir() else []
        )
        numbers = flatten_numbers(run.concepts) if run.concepts else {}
        parts.append(
            f'<div class="run"><h3>{html.escape(run.name)}{link}</h3>'
            + (_key_values(numbers) if numbers else "")
            + _thumbs(galleries, out, limit=4, link_rest=False)
            + "</div>"
        )
    if not parts:
        return "<p>No concepts results were given (msae concepts).</p>"
    return "".join(parts)


def _probes_section(runs: Sequence[RunResults], out: Path) -> str:
    parts = []
    for run in runs:
        for kind, directory in sorted(run.probe_dirs.items()):
            images = sorted(directory.glob("*.png"))
            main = [p for p in images if p.name in ("curves.png", "bias.png")]
            rest = [p for p in images if p not in main]
            numbers = flatten_numbers(run.probes.get(kind, {}))
            parts.append(
                f'<div class="run"><h3>{html.escape(run.name)}: {html.escape(kind)}</h3>'
                + (_key_values(numbers) if numbers else "")
                + _thumbs(main + rest, out, limit=4)
                + "</div>"
            )
    if not parts:
        return "<p>No probe results were given (msae probe similarity | bias).</p>"
    return "".join(parts)


def index_page(runs: Sequence[RunResults], out: Path, files: dict[str, Path]) -> str:
    """The body of index.html; `files` are the report's own outputs (name -> path) to link."""
    nav = " ".join(f'<a href="{quote(name)}">{html.escape(name)}</a>' for name in files if not name.startswith(PER_RUN))
    browser = f"{BROWSER_DIR}/{INDEX_FILE}"
    body = [
        "<h1>msae report</h1>",
        f'<p class="note">{len(runs)} runs: {html.escape(", ".join(r.name for r in runs))}</p>',
        f"<nav>{nav}</nav>",
    ]
    if browser in files:
        body.append(
            f'<p class="lead"><a href="{quote(browser)}">Open the concept browser</a>: every latent of every run '
            "with its names, images and matches in the other runs; search by concept.</p>"
        )
    body += [
        "<h2>SAE comparison</h2>",
        tables_html(runs),
        "<h2>Sparsity vs reconstruction</h2>",
        '<p class="note">Each Matryoshka model is one curve (top-k of its dense latents at every k); '
        "single-k models are points (filled: their own sparse activation; ring: dense path). "
        'Vector version: <a href="pareto.svg">pareto.svg</a>; data: <a href="pareto.csv">pareto.csv</a>.</p>',
        f'<img class="figure" src="{data_uri(files["pareto.png"])}" alt="Pareto plot">',
    ]
    if "curves.png" in files:
        per_run = " · ".join(
            f'<a href="{quote(name)}">{html.escape(Path(name).stem)}</a>'
            for name in files
            if name.startswith("curves/")
        )
        body += [
            "<h2>Training curves</h2>",
            f'<img class="figure" src="{data_uri(files["curves.png"])}" alt="training curves">',
            f'<p class="note">One figure per run: {per_run}. Data: <a href="train_curves.csv">train_curves.csv</a>.</p>',
        ]
    body += ["<h2>Concepts</h2>", _concepts_section(runs, out), "<h2>Probes</h2>", _probes_section(runs, out)]
    return "\n".join(body)
