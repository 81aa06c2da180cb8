"""`msae report`: the comparison of every run (tables, Pareto plot, curves, pages)."""

from __future__ import annotations

from pathlib import Path

from msae import layout
from msae.config.base import PathOption, StageConfig, StrList, opt


class ReportConfig(StageConfig):
    """Aggregate every run's metrics.json, progressive.csv, train_log.csv, concepts and probe summaries."""

    runs: PathOption = opt(Path(layout.SAE_ROOT), "directory of trained SAEs (<run>/config.json, train_log.csv)")
    eval: PathOption = opt(Path(layout.EVAL_ROOT), "directory of evaluations (<run>/metrics.json, progressive.csv)")
    concepts: PathOption = opt(
        Path(layout.CONCEPTS_ROOT), "directory of concepts outputs (<run>/summary.json, index.html); skipped if absent"
    )
    probes: PathOption = opt(
        Path(layout.PROBES_ROOT), "directory of probe outputs (<run>/similarity, <run>/bias); skipped if absent"
    )
    run_names: StrList = opt(
        (),
        "report only these runs, in this order (repeatable); default: every run under --runs",
        metavar="NAME",
        alias="run",
    )
    images: PathOption | None = opt(
        None,
        "image store the concepts were named on (msae concepts --images); given: "
        "also write the concept browser to OUT/browser",
    )
    image_root: PathOption | None = opt(
        None, "folder the image store's relative `path` values start from; default: the working directory"
    )
    out: PathOption = opt(Path(layout.REPORT_DIR), "output directory")
