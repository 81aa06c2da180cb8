"""`msae report`: tables, Pareto plot, training curves and index.html from the stage outputs."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.report import ReportConfig
from msae.layout import INDEX_FILE

HELP = "build results/report: the paper's comparison table, Pareto plot, curves and an HTML page"


def run(config: ReportConfig) -> int:
    from msae.report import build_report

    files = build_report(config)
    index = config.out / INDEX_FILE
    print(f"msae report: wrote {len(files)} files to {config.out} (open {index})")
    return 0


COMMANDS = (
    Command(
        "report",
        help=HELP,
        description=(
            "Aggregate every run's metrics.json, progressive.csv, train_log.csv, concepts and probe "
            "summaries into summary.json, table.md/.html, pareto.png/.svg, curves/ and index.html. "
            "metrics.json is required for every run; the other parts are shown when present."
        ),
        spec=single(ReportConfig),
        run=run,
        order=80,
    ),
)
