"""The paper's Table 1 (dense path) and its sparse-path twin, as Markdown and HTML, and the
machinery every report table shares (msae.report.comparisons holds Table 2, the seeds and the
bias tables).

Cells show "mean ± std" as the paper does (".920 ± .008"); NDN is the paper's "a(b)" pair:
latents never active on the evaluation set (dense path) and, in brackets, dead at the end of
training. Quantities too small for the paper's two decimals (LP(KL) on the world is ~1e-3 nats)
print in scientific notation so runs can be told apart. The best value per column is marked,
judged on the value as displayed so two cells that read the same are both marked.

Two numbers measure sparsity and the headers say which is which: "L0 (zero frac.)" is the paper's
L0, the fraction of latents that are zero per sample (higher is sparser, metrics key
`l0_zero_fraction`); "Active (count)" is the mean number of non-zero latents per sample, what most
SAE libraries call L0 (lower is sparser, key `active`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from msae.report.collect import RunResults

MISSING = "–"
SCIENTIFIC_BELOW = 0.01  # |value| under this prints as 6.6e-04 where the paper's 2 decimals read 0.00


@dataclass(frozen=True)
class Column:
    """One table column: where its numbers live, how they print, which way is better."""

    header: str
    higher_is_better: bool
    key: tuple[str, ...]
    second: tuple[str, ...] | None = None  # the std ("pm") or the bracketed number ("pair")
    style: str = "pm"  # "pm": a ± b; "pair": a(b); "single": a
    digits: str = "frac"  # "frac": .123; "nats": 50.5 / 2.71 / 6.6e-04; "int": 12
    source: str = "metrics"  # where the numbers are: see `source_data`
    tip: str = ""
    mark: bool = True  # mark the best value (False where "best" means nothing, e.g. a bias rank)

    @property
    def title(self) -> str:
        return f"{self.header} {'↑' if self.higher_is_better else '↓'}" if self.mark else self.header


def seed_summary(run: RunResults) -> dict[str, Any] | None:
    """{"n", "mean", "std"} of every metric over the run's seeds (its own metrics.json and each
    replica's), the std with ddof=1 (seeds are a sample); None without replicas."""
    replicas = run.seed_metrics
    if not replicas:
        return None
    every = [run.metrics, *replicas.values()]

    def over(key: Callable[[list[float]], float], nodes: list[Any]) -> Any:
        if all(isinstance(n, dict) for n in nodes):
            shared = [k for k in nodes[0] if all(k in n for n in nodes[1:])]
            return {k: over(key, [n[k] for n in nodes]) for k in shared}
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in nodes):
            return key([float(n) for n in nodes])
        return None

    return {
        "n": len(every),
        "mean": over(lambda v: float(np.mean(v)), every),
        "std": over(lambda v: float(np.std(v, ddof=1)), every),
    }


def source_data(run: RunResults, source: str) -> Any:
    """The dict a column reads: `metrics` (metrics.json), `concepts` (concepts summary),
    `stability` (stability.json), `seeds` (seed_summary), `probe:<kind>` (a probe summary) or
    `eval:<name>` (another evaluation of the run, e.g. eval:text_test)."""
    if source == "metrics":
        return run.metrics
    if source == "concepts":
        return run.concepts
    if source == "stability":
        return run.stability
    if source == "seeds":
        return seed_summary(run)
    kind, _, name = source.partition(":")
    if kind == "probe":
        return run.probes.get(name)
    if kind == "eval":
        return run.cross_modal.get(name)
    raise ValueError(f"unknown column source {source!r}")


STABILITY_TIP = (
    "seed stability: share of decoder atoms matched one to one (Hungarian) above cosine {threshold} between "
    "seeds, mean ± std over all pairs of seeds (Paulo & Belrose 2025); – without extra seeds"
)
L0_TIP = "the paper's L0: fraction of latents that are zero per sample (higher = sparser)"
ACTIVE_TIP = "mean number of non-zero latents per sample, what most SAE libraries call L0 (lower = sparser)"


def path_columns(path: str, source: str = "metrics", prefix: str = "") -> tuple[Column, ...]:
    """L0, FVU, CS and CKNNA of one path (`dense` or `sparse`) of one evaluation."""
    return (
        Column(f"{prefix}L0 (zero frac.)", True, (path, "l0_zero_fraction"), (path, "l0_zero_fraction_std"), source=source, tip=L0_TIP),
        Column(f"{prefix}FVU", False, (path, "fvu"), (path, "fvu_std"), source=source, tip="fraction of variance unexplained per sample, raw space"),
        Column(f"{prefix}CS", True, (path, "cs"), (path, "cs_std"), source=source, tip="cosine of embedding and reconstruction"),
        Column(f"{prefix}CKNNA", True, (path, "cknna"), (path, "cknna_std"), source=source, tip="kernel alignment of latents with the raw embeddings, mean ± std over the evaluation's batches"),
    )  # fmt: skip


_DENSE_L0, _DENSE_FVU, _DENSE_CS, _DENSE_CKNNA = path_columns("dense")
DENSE_COLUMNS: tuple[Column, ...] = (
    _DENSE_L0,
    _DENSE_FVU,
    _DENSE_CS,
    Column("LP(KL)", False, ("lp_kl",), ("lp_kl_std",), digits="nats", tip="KL of linear-probe predictions, original vs reconstruction (nats)"),
    Column("LP(Acc)", True, ("lp_agree",), ("lp_agree_std",), tip="linear-probe prediction agreement, original vs reconstruction"),
    _DENSE_CKNNA,
    Column("DO", False, ("do",), style="single", tip="mean squared cosine between decoder atoms"),
    Column("NDN", False, ("ndn",), ("ndn_train",), style="pair", digits="int", tip="dead on the eval set (dead at the end of training)"),
    Column("Active (count)", False, ("dense", "active"), ("dense", "active_std"), digits="nats", tip=ACTIVE_TIP),
    Column("ZS ret.", True, ("zeroshot_retained",), style="single", tip="zero-shot accuracy with reconstructions / with originals"),
    Column("R@5 ret.", True, ("recall5_retained",), style="single", tip="image→text recall@5 with reconstructions / with originals"),
    Column("Valid", True, ("valid_concepts",), style="single", digits="int", source="concepts", tip="valid named concepts"),
    Column("Stability", True, ("fraction_above",), ("fraction_above_std",), source="stability", tip=STABILITY_TIP),
)  # fmt: skip

_SPARSE_L0, _SPARSE_FVU, _SPARSE_CS, _SPARSE_CKNNA = path_columns("sparse")
SPARSE_COLUMNS: tuple[Column, ...] = (
    _SPARSE_L0,
    Column("Active (count)", False, ("sparse", "active"), ("sparse", "active_std"), digits="nats", tip=ACTIVE_TIP),
    _SPARSE_FVU,
    _SPARSE_CS,
    _SPARSE_CKNNA,
    Column("NDN", False, ("ndn_sparse",), style="single", digits="int", tip="latents never active on the eval set (sparse path)"),
)  # fmt: skip

SPARSITY_HEADERS = (
    "L0 (zero frac.) is the paper's L0: the fraction of latents that are zero per sample (↑ sparser). "
    "Active (count) is the mean number of non-zero latents per sample, what most SAE libraries call L0 "
    "(↓ sparser)."
)
DENSE_NOTE = (
    "Dense path: ReLU over all latents, what the paper's tables report (SAEs only: a classic baseline's "
    f"dense path is not its coder, see the sparse path). Mean ± std over evaluation samples (CKNNA: over "
    f"its batches). {SPARSITY_HEADERS} LP(KL) below 0.01 nats prints in scientific notation. NDN is a(b) = "
    "never active on the evaluation set (dead at the end of training); ZS/R@5 ret. = zero-shot accuracy / "
    "image→text recall@5 with reconstructions divided by with originals; Valid = valid named concepts; "
    "Stability = share of atoms matched above cosine {threshold} across seeds (mean ± std over seed pairs). Best "
    "value per column in bold; ↑ higher is better, ↓ lower."
)
SPARSE_NOTE = (
    "Sparse path: each model's own inference activation (TopK: top-k; BatchTopK/JumpReLU: learned "
    "threshold; ReLU: ReLU; Matryoshka: top-k at its smallest nesting level; prefix Matryoshka: its "
    "BatchTopK threshold; classic baselines (baseline-*): the method's own code, e.g. OMP or the nearest "
    f"centroid). {SPARSITY_HEADERS} Best value per column in bold."
)


def lookup(data: Any, path: tuple[str, ...]) -> float | None:
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


def scientific(value: float, digits: str) -> bool:
    """Nats (and counts) too small for the paper's two decimals print as 6.6e-04."""
    return digits == "nats" and 0 < abs(value) < SCIENTIFIC_BELOW


def format_number(value: float, digits: str, decimals: int | None = None, like: float | None = None) -> str:
    """Print like the paper: '.920' for fractions, '50.5' / '2.71' for nats and counts of latents,
    '6.6e-04' for nats under 0.01; `decimals` overrides the places and `like` is the mean a std is
    printed with (a std takes its mean's style: '0.66 ± 1.03', '6.6e-04 ± 2.2e-04')."""
    if digits == "int":
        return str(int(round(value)))
    if scientific(value if like is None else like, digits):
        return f"{value:.1e}"
    places = decimals_for(value, digits) if decimals is None else decimals
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
    data = source_data(run, column.source)
    main = lookup(data, column.key)
    if main is None:
        return Cell(MISSING, None)
    main_text = format_number(main, column.digits)
    second = lookup(data, column.second) if column.second else None
    if second is None:
        return Cell(main_text, (float(main_text),))
    second_text = format_number(second, column.digits, decimals_for(main, column.digits), like=main)
    if column.style == "pair":
        return Cell(f"{main_text}({second_text})", (float(main_text), float(second_text)))
    return Cell(f"{main_text} ± {second_text}", (float(main_text),))


def build_rows(runs: Sequence[RunResults], columns: Sequence[Column]) -> list[list[Cell]]:
    """Cells per run and column, with the best displayed value(s) of each column marked.
    NDN pairs compare lexicographically: fewer eval-dead first, then fewer training-dead."""
    rows = [[make_cell(run, column) for column in columns] for run in runs]
    for j, column in enumerate(columns):
        keys = [key for row in rows if (key := row[j].rank_key) is not None]
        if len(keys) < 2 or not column.mark:
            continue
        best = max(keys) if column.higher_is_better else min(keys)
        for row in rows:
            if row[j].rank_key == best:
                row[j] = Cell(row[j].text, row[j].rank_key, best=True)
    return rows


TRAINED_ON = {"both": "image+text"}  # a label word for a store modality, where it differs


def training_modality(run: RunResults) -> str | None:
    """The modality of the run's training store (config.json), when it is not images."""
    data = (run.config or {}).get("data")
    modality = data.get("modality") if isinstance(data, dict) else None
    return TRAINED_ON.get(str(modality), str(modality)) if modality and modality != "image" else None


def model_label(run: RunResults) -> str:
    modality = training_modality(run)
    return f"{run.name} · {run.description}" + (f" · trained on {modality}" if modality else "")


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
        label = model_label(run)[len(run.name) + 3 :]
        body.append(f'<tr><th scope="row">{esc(run.name)}<br><span class="desc">{esc(label)}</span></th>{cells}</tr>')
    return (
        f'<table class="results"><caption>{esc(caption)}</caption>'
        f"<thead><tr><th>Model</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


@dataclass(frozen=True)
class Table:
    """One table of the report: a heading, its runs and columns, and the note under it. Headers,
    tips and the note may say `{threshold}`: the stability cosine the runs were matched at."""

    heading: str
    runs: Sequence[RunResults]
    columns: Sequence[Column]
    note: str

    def stating(self, threshold: str) -> Table:
        """The table with `{threshold}` filled in everywhere it is said."""

        def fill(text: str) -> str:
            return text.replace("{threshold}", threshold)

        columns = [replace(c, header=fill(c.header), tip=fill(c.tip)) for c in self.columns]
        return Table(self.heading, self.runs, columns, fill(self.note))


def stability_threshold(runs: Sequence[RunResults]) -> str:
    """The cosine the runs' seeds were matched at, as their stability.json record it (several
    joined by '/'); `msae stability`'s default when no run has one."""
    from msae.config.evaluate import StabilityConfig

    found = {float(r.stability["threshold"]) for r in runs if r.stability and "threshold" in r.stability}
    return "/".join(f"{t:g}" for t in sorted(found)) or f"{StabilityConfig.model_fields['threshold'].default:g}"


def tables(runs: Sequence[RunResults]) -> list[Table]:
    """Every table of the report, in order; tables without rows are left out."""
    from msae.report.comparisons import bias_table, modality_tables, seeds_table

    saes = [run for run in runs if not run.is_baseline]
    found = [
        Table("Dense path (the paper's Table 1)", saes, DENSE_COLUMNS, DENSE_NOTE),
        Table("Sparse path", runs, SPARSE_COLUMNS, SPARSE_NOTE),
        *modality_tables(saes),
        seeds_table(saes),
        bias_table(saes),
    ]
    threshold = stability_threshold(runs)
    return [table.stating(threshold) for table in found if table.runs]


def tables_markdown(runs: Sequence[RunResults]) -> str:
    """table.md: every table with its note."""
    parts = ["# SAE comparison\n"]
    for table in tables(runs):
        parts.append(f"## {table.heading}\n\n{to_markdown(table.runs, table.columns)}\n{table.note}\n")
    return "\n".join(parts)


def tables_html(runs: Sequence[RunResults]) -> str:
    """Every table as one HTML fragment (used by table.html and index.html)."""
    return "".join(
        to_html(table.runs, table.columns, table.heading) + f'<p class="note">{html.escape(table.note)}</p>'
        for table in tables(runs)
    )
