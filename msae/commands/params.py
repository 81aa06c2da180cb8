"""`msae params check`: validate params.yaml before any pipeline job starts (the first DVC stage;
the Snakefile runs the same check when it is parsed)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 5
HELP = "check params.yaml against workflow/schemas/params.schema.yaml and the cross-key rules"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("params", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a params file; exit 2 naming every bad key")
    check.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"),
                       help="params file; default: %(default)s")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.params import load_params

    params = load_params(args.path)
    print(f"msae params: {args.path} is valid ({len(params['runs'])} runs: {', '.join(params['runs'])})")
    return 0
