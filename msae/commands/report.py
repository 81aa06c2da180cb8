"""`msae report`: tables, Pareto plot, training curves and index.html from the stage outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 80
HELP = "build results/report: the paper's comparison table, Pareto plot, curves and an HTML page"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help=HELP,
        description=(
            "Aggregate every run's metrics.json, progressive.csv, train_log.csv, concepts and probe "
            "summaries into summary.json, table.md/.html, pareto.png/.svg, curves/ and index.html. "
            "metrics.json is required for every run; the other parts are shown when present."
        ),
    )
    parser.add_argument("--runs", type=Path, default=Path("results/sae"),
                        help="directory of trained SAEs (<run>/config.json, train_log.csv); default: %(default)s")
    parser.add_argument("--eval", type=Path, default=Path("results/eval"),
                        help="directory of evaluations (<run>/metrics.json, progressive.csv); default: %(default)s")
    parser.add_argument("--concepts", type=Path, default=Path("results/concepts"),
                        help="directory of concepts outputs (<run>/summary.json, index.html); skipped if absent; default: %(default)s")
    parser.add_argument("--probes", type=Path, default=Path("results/probes"),
                        help="directory of probe outputs (<run>/similarity, <run>/bias); skipped if absent; default: %(default)s")
    parser.add_argument("--run", dest="run_names", action="append", metavar="NAME",
                        help="report only these runs, in this order (repeatable); default: every run under --runs")
    parser.add_argument("--out", type=Path, default=Path("results/report"), help="output directory; default: %(default)s")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.report import build_report

    files = build_report(
        args.out,
        eval_dir=args.eval,
        runs_dir=args.runs,
        concepts_dir=args.concepts,
        probes_dir=args.probes,
        run_names=args.run_names,
    )
    print(f"msae report: wrote {len(files)} files to {args.out} (open {args.out / 'index.html'})")
    return 0
