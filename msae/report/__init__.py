"""`msae report`: the paper's comparison table, the Pareto plot and one browsable page, built
from the files the other stages wrote (never recomputing a metric).

    from msae.config.report import ReportConfig
    from msae.report import build_report
    build_report(ReportConfig())  # results/sae, results/eval, ... -> results/report
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from msae.config.report import ReportConfig
from msae.errors import MsaeError
from msae.io import staged_dir, write_json_atomic, write_text_atomic
from msae.layout import BROWSER_DIR, CURVES_CSV, HEADLINE_DIR, INDEX_FILE, PARETO_CSV, SUMMARY_FILE
from msae.report.collect import RunResults, discover_runs, headline, load_run, run_summary
from msae.sae import variants

__all__ = ["RunResults", "build_report", "load_runs", "report_summary"]


def load_runs(
    eval_dir: Path,
    runs_dir: Path | None = None,
    concepts_dir: Path | None = None,
    probes_dir: Path | None = None,
    run_names: Sequence[str] | None = None,
) -> list[RunResults]:
    """Load the named runs in the given order, or every run found in the paper's table order
    (ReLU, TopK, BatchTopK, JumpReLU, Matryoshka; then by name); duplicates are refused."""
    names = list(run_names) if run_names else discover_runs(runs_dir, eval_dir)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MsaeError(f"--run: given more than once: {', '.join(duplicates)}")
    runs = [
        load_run(name, eval_dir, runs_dir, concepts_dir, probes_dir)
        for name in tqdm(names, desc="report: reading runs", unit="run", leave=False)
    ]
    if not run_names:
        order = list(variants.registry())
        runs.sort(key=lambda r: (order.index(r.variant) if r.variant in order else len(order), r.name))
    return runs


def report_summary(runs: Sequence[RunResults]) -> dict[str, dict[str, float | int]]:
    """summary.json: {run: {flat_key: number}}, what `dvc metrics diff` compares."""
    return {run.name: run_summary(run) for run in runs}


def write_headlines(runs: Sequence[RunResults], directory: Path) -> dict[str, Path]:
    """headline/<run>.json per run, what dvc.yaml declares as metrics (written into the report's
    staging folder, whose prune drops the files of runs no longer reported)."""
    return {
        f"{HEADLINE_DIR}/{run.name}.json": write_json_atomic(directory / f"{run.name}.json", headline(run))
        for run in runs
    }


def build_report(config: ReportConfig) -> dict[str, Path]:
    """`msae report`: write every report file under `config.out` (summary.json last, as the
    'done' marker) and return them by name relative to it."""
    runs = load_runs(config.eval, config.runs, config.concepts, config.probes, list(config.run_names) or None)
    # every file goes to a staging folder that replaces an earlier report's files only at the end
    with staged_dir(config.out, SUMMARY_FILE, prune=(f"{HEADLINE_DIR}/*.json",)) as stage:
        files = _write_report(config, runs, stage)
        return {name: config.out / path.relative_to(stage) for name, path in files.items()}


def _write_report(config: ReportConfig, runs: list[RunResults], out: Path) -> dict[str, Path]:
    from msae.report.figures import curves_frame, pareto_frame, write_figures
    from msae.report.page import html_document, index_page
    from msae.report.table import tables_html, tables_markdown

    files: dict[str, Path] = {}
    files["table.md"] = write_text_atomic(out / "table.md", tables_markdown(runs))
    files["table.html"] = write_text_atomic(out / "table.html", html_document("SAE comparison", tables_html(runs)))
    files.update(write_figures(runs, out))
    files[PARETO_CSV] = write_text_atomic(out / PARETO_CSV, pareto_frame(runs).to_csv(index=False))
    files[CURVES_CSV] = write_text_atomic(out / CURVES_CSV, curves_frame(runs).to_csv(index=False))
    files.update(write_headlines(runs, out / HEADLINE_DIR))
    if config.images is not None:
        from msae.report.browser import write_browser

        write_browser(out / BROWSER_DIR, runs, config.runs, config.images, image_root=config.image_root, figures=files)
        files[f"{BROWSER_DIR}/{INDEX_FILE}"] = out / BROWSER_DIR / INDEX_FILE  # the page lists every key
    files[SUMMARY_FILE] = out / SUMMARY_FILE
    files[INDEX_FILE] = write_text_atomic(out / INDEX_FILE, html_document("msae report", index_page(runs, out, files)))
    write_json_atomic(out / SUMMARY_FILE, report_summary(runs))
    return files
