"""The paper's Table 1 (dense path) and its sparse-path twin, as Markdown and HTML.

Cells show "mean ± std" as the paper does (".920 ± .008"); NDN is the paper's "a(b)" pair:
latents never active on the evaluation set (dense path) and, in brackets, dead at the end of
training. The best value per column is marked, judged on the value as displayed so two cells
that read the same are both marked.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from msae.report.collect import RunResults

MISSING = "–"


@dataclass(frozen=True)
class Column:
    """One table column: where its numbers live, how they print, which way is better."""

    header: str
    higher_is_better: bool
    key: tuple[str, ...]
    second: tuple[str, ...] | None = None  # the std ("pm") or the bracketed number ("pair")
    style: str = "pm"  # "pm": a ± b; "pair": a(b); "single": a
    digits: str = "frac"  # "frac": .123; "nats": 50.5 / 2.71; "int": 12
    source: str = "metrics"  # "metrics" or "concepts"
    tip: str = ""

    @property
    def title(self) -> str:
        return f"{self.header} {'↑' if self.higher_is_better else '↓'}"


DENSE_COLUMNS: tuple[Column, ...] = (
    Column(
        "L0", True, ("dense", "l0"), ("dense", "l0_std"), tip="fraction of zero latents per sample (higher = sparser)"
    ),
    Column(
        "FVU",
        False,
        ("dense", "fvu"),
        ("dense", "fvu_std"),
        tip="fraction of variance unexplained per sample, raw space",
    ),
    Column("CS", True, ("dense", "cs"), ("dense", "cs_std"), tip="cosine of embedding and reconstruction"),
    Column(
        "LP(KL)",
        False,
        ("lp_kl",),
        ("lp_kl_std",),
        digits="nats",
        tip="KL of linear-probe predictions, original vs reconstruction (nats)",
    ),
    Column(
        "LP(Acc)",
        True,
        ("lp_agree",),
        ("lp_agree_std",),
        tip="linear-probe prediction agreement, original vs reconstruction",
    ),
    Column(
        "CKNNA",
        True,
        ("dense", "cknna"),
        ("dense", "cknna_std"),
        tip="kernel alignment of latents with the raw embeddings",
    ),
    Column("DO", False, ("do",), style="single", tip="mean squared cosine between decoder atoms"),
    Column(
        "NDN",
        False,
        ("ndn",),
        ("ndn_train",),
        style="pair",
        digits="int",
        tip="dead on the eval set (dead at the end of training)",
    ),
    Column(
        "Active",
        False,
        ("dense", "active"),
        ("dense", "active_std"),
        digits="nats",
        tip="mean count of active latents per sample",
    ),
    Column(
        "ZS ret.",
        True,
        ("zeroshot_retained",),
        style="single",
        tip="zero-shot accuracy with reconstructions / with originals",
    ),
    Column(
        "R@5 ret.",
        True,
        ("recall5_retained",),
        style="single",
        tip="image→text recall@5 with reconstructions / with originals",
    ),
    Column(
        "Valid", True, ("valid_concepts",), style="single", digits="int", source="concepts", tip="valid named concepts"
    ),
)

SPARSE_COLUMNS: tuple[Column, ...] = (
    Column(
        "L0", True, ("sparse", "l0"), ("sparse", "l0_std"), tip="fraction of zero latents per sample (higher = sparser)"
    ),
    Column(
        "Active",
        False,
        ("sparse", "active"),
        ("sparse", "active_std"),
        digits="nats",
        tip="mean count of active latents per sample",
    ),
    Column(
        "FVU",
        False,
        ("sparse", "fvu"),
        ("sparse", "fvu_std"),
        tip="fraction of variance unexplained per sample, raw space",
    ),
    Column("CS", True, ("sparse", "cs"), ("sparse", "cs_std"), tip="cosine of embedding and reconstruction"),
    Column(
        "CKNNA",
        True,
        ("sparse", "cknna"),
        ("sparse", "cknna_std"),
        tip="kernel alignment of latents with the raw embeddings",
    ),
    Column(
        "NDN",
        False,
        ("ndn_sparse",),
        style="single",
        digits="int",
        tip="latents never active on the eval set (sparse path)",
    ),
)

DENSE_NOTE = (
    "Dense path: ReLU over all latents, what the paper's tables report. Mean ± std over evaluation "
    "samples; NDN is a(b) = never active on the evaluation set (dead at the end of training); "
    "ZS/R@5 ret. = zero-shot accuracy / image→text recall@5 with reconstructions divided by with "
    "originals; Valid = valid named concepts. Best value per column in bold; ↑ higher is better, ↓ lower."
)
SPARSE_NOTE = (
    "Sparse path: each model's own inference activation (TopK: top-k; BatchTopK/JumpReLU: learned "
    "threshold; ReLU: ReLU; Matryoshka: top-k at its smallest nesting level). Best value per column in bold."
)


def lookup(data: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    """Follow `path` into nested dicts; None when any step is missing or the value is not a number."""
    value: Any = data
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def decimals_for(value: float, digits: str) -> int:
    """Decimal places as the paper prints them: 3 for fractions; for nats and latent counts
    three significant digits (50.5, 2.71), none from 100 up."""
    if digits == "int":
        return 0
    if digits == "nats":
        return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return 3


def format_number(value: float, digits: str, decimals: int | None = None) -> str:
    """Print like the paper: '.920' for fractions, '50.5' / '2.71' for nats and counts of latents;
    `decimals` overrides the places (a std is printed with its mean's places: '0.66 ± 1.03')."""
    places = decimals_for(value, digits) if decimals is None else decimals
    if digits == "int":
        return str(int(round(value)))
    text = f"{value:.{places}f}"
    if digits != "frac":
        return text
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    return text


@dataclass(frozen=True)
class Cell:
    text: str
    rank_key: tuple[float, ...] | None  # the displayed numbers; None for an empty cell
    best: bool = False


def make_cell(run: RunResults, column: Column) -> Cell:
    data = run.concepts if column.source == "concepts" else run.metrics
    main = lookup(data, column.key)
    if main is None:
        return Cell(MISSING, None)
    main_text = format_number(main, column.digits)
    second = lookup(data, column.second) if column.second else None
    if second is None:
        return Cell(main_text, (float(main_text),))
    second_text = format_number(second, column.digits, decimals_for(main, column.digits))
    if column.style == "pair":
        return Cell(f"{main_text}({second_text})", (float(main_text), float(second_text)))
    return Cell(f"{main_text} ± {second_text}", (float(main_text),))


def build_rows(runs: Sequence[RunResults], columns: Sequence[Column]) -> list[list[Cell]]:
    """Cells per run and column, with the best displayed value(s) of each column marked.
    NDN pairs compare lexicographically: fewer eval-dead first, then fewer training-dead."""
    rows = [[make_cell(run, column) for column in columns] for run in runs]
    for j, column in enumerate(columns):
        keys = [key for row in rows if (key := row[j].rank_key) is not None]
        if len(keys) < 2:
            continue
        best = max(keys) if column.higher_is_better else min(keys)
        for row in rows:
            if row[j].rank_key == best:
                row[j] = Cell(row[j].text, row[j].rank_key, best=True)
    return rows


def model_label(run: RunResults) -> str:
    return f"{run.name} · {run.description}"


def to_markdown(runs: Sequence[RunResults], columns: Sequence[Column]) -> str:
    """A GitHub-style Markdown table; best cells in **bold**."""
    header = "| Model | " + " | ".join(c.title for c in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    lines = [header, rule]
    for run, row in zip(runs, build_rows(runs, columns)):
        cells = [f"**{c.text}**" if c.best else c.text for c in row]
        lines.append("| " + " | ".join([model_label(run).replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_html(runs: Sequence[RunResults], columns: Sequence[Column], caption: str) -> str:
    """An HTML <table> fragment; best cells in <strong> with class 'best', tooltips per header."""
    esc = html.escape
    head = "".join(f'<th title="{esc(c.tip)}">{esc(c.title)}</th>' for c in columns)
    body = []
    for run, row in zip(runs, build_rows(runs, columns)):
        cells = "".join(
            f'<td class="best"><strong>{esc(c.text)}</strong></td>' if c.best else f"<td>{esc(c.text)}</td>"
            for c in row
        )
        body.append(
            f'<tr><th scope="row">{esc(run.name)}<br><span class="desc">{esc(run.description)}</span></th>{cells}</tr>'
        )
    return (
        f'<table class="results"><caption>{esc(caption)}</caption>'
        f"<thead><tr><th>Model</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def tables_markdown(runs: Sequence[RunResults]) -> str:
    """table.md: both tables with their notes."""
    return (
        "# SAE comparison\n\n"
        "## Dense path (the paper's Table 1)\n\n"
        + to_markdown(runs, DENSE_COLUMNS)
        + f"\n{DENSE_NOTE}\n\n## Sparse path\n\n"
        + to_markdown(runs, SPARSE_COLUMNS)
        + f"\n{SPARSE_NOTE}\n"
    )


def tables_html(runs: Sequence[RunResults]) -> str:
    """Both tables as one HTML fragment (used by table.html and index.html)."""
    return (
        to_html(runs, DENSE_COLUMNS, "Dense path (the paper's Table 1)")
        + f'<p class="note">{html.escape(DENSE_NOTE)}</p>'
        + to_html(runs, SPARSE_COLUMNS, "Sparse path")
        + f'<p class="note">{html.escape(SPARSE_NOTE)}</p>'
    )
