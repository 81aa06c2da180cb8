"""`msae plots template`: write the offline page template for `dvc plots show`."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 95
HELP = "write an HTML template with vega inlined so `dvc plots show` renders without internet"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plots", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    template = actions.add_parser("template", help=HELP)
    template.add_argument("--out", type=Path, default=Path(".dvc/plots/offline.html"),
                          help="template file; use it with `dvc plots show --html-template FILE`; default: %(default)s")
    template.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.dvc_plots import write_offline_template

    path = write_offline_template(args.out)
    print(f"msae plots: wrote {path}; render with `dvc plots show --html-template {path}`")
    return 0
