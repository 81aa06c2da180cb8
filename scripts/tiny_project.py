"""A tiny copy of this project's pipeline, and a comparison of two runs' results.

The scale-out scripts (scripts/slurm/run.sh, scripts/dvc-remote.sh) run the real rules and
commands on a few hundred world images and two small runs: minutes instead of hours. The shrinking
is the end-to-end tests' (tests/pipeline_support.py), so both stay one definition of "tiny".

    python scripts/tiny_project.py make DEST [--runs topk matryoshka] [--full]
    python scripts/tiny_project.py compare A B     # exit 1 when the results differ
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pipeline_support import copy_project, init_dvc_repo, tiny_params  # noqa: E402

# Files that record how a job went rather than what it computed, and each tool's bookkeeping.
NOT_RESULTS = ("results/logs/",)
BOOKKEEPING = (".gitignore", ".snakemake_timestamp")


def make(dest: Path, runs: tuple[str, ...], full: bool) -> Path:
    """Copy the pipeline to `dest` (a new git repository, committed) with tiny params.yaml,
    or the default params.yaml when `full`."""
    root = copy_project(dest)
    if not full:
        default = yaml.safe_load((ROOT / "params.yaml").read_text())
        params = tiny_params(default, "builtin", runs)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (root / "blocklist.txt").write_text("")
    return init_dvc_repo(root)


def result_hashes(root: Path) -> dict[str, str]:
    """sha256 of every result file under root/results, keyed by its path in the project."""
    hashes = {}
    for path in sorted((root / "results").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and path.name not in BOOKKEEPING and not rel.startswith(NOT_RESULTS):
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def compare(a: Path, b: Path) -> list[str]:
    """One line per difference between the results of two runs (nothing when identical)."""
    ha, hb = result_hashes(a), result_hashes(b)
    if not ha:
        return [f"{a}: no results"]
    lines = [f"only in {a}: {k}" for k in sorted(set(ha) - set(hb))]
    lines += [f"only in {b}: {k}" for k in sorted(set(hb) - set(ha))]
    lines += [f"differs: {k}" for k in sorted(set(ha) & set(hb)) if ha[k] != hb[k]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("make", help="write a tiny copy of the pipeline to DEST")
    made.add_argument("dest", type=Path)
    made.add_argument("--runs", nargs="+", default=["topk", "matryoshka"], help="variants, one small run each")
    made.add_argument("--full", action="store_true", help="keep the default params.yaml (the real workload)")
    compared = sub.add_parser("compare", help="are the results of two runs identical?")
    compared.add_argument("a", type=Path)
    compared.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.command == "make":
        print(make(args.dest, tuple(args.runs), args.full))
        return 0
    differences = compare(args.a, args.b)
    for line in differences[:20]:
        print(line)
    if differences:
        print(f"{len(differences)} difference(s) between {args.a} and {args.b}")
        return 1
    print(f"identical results: {len(result_hashes(args.a))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
