"""`msae sync --after snakemake|dvc`: record what one orchestrator produced in the other."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 90
HELP = "after `snakemake`: dvc commit -f; after `dvc repro`/`dvc pull`: snakemake --touch (checked first)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sync",
        help=HELP,
        description=(
            "Switch orchestrators without recomputing. --after snakemake records Snakemake's outputs in "
            "dvc.lock (`dvc commit -f`), refused while Snakemake has jobs left or a DVC output is missing. "
            "--after dvc marks DVC's outputs up to date for Snakemake (`snakemake --touch`), refused while "
            "`dvc status` is not clean or an output is missing."
        ),
    )
    parser.add_argument("--after", required=True, choices=("snakemake", "dvc"),
                        help="the tool that produced the current results")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="project folder (Snakefile, dvc.yaml, params.yaml); default: the current folder")
    parser.add_argument("--check", action="store_true", help="only run the checks; record nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.sync import sync

    command = sync(args.after, args.root, check_only=args.check)
    done = "checks passed; would run" if args.check else "ran"
    print(f"msae sync: {done} `{' '.join(command[2:])}` in {args.root}")
    return 0
