"""Wall time of the default pipeline from a fresh copy: `snakemake --cores all` (the README's
`make run`), then a no-op rerun. Prints a table of time per rule and writes
benchmarks/results/pipeline.json. Usage: python benchmarks/pipeline.py [--cores N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pipeline_support import copy_project, tool_env  # noqa: E402


def run_snakemake(root: Path, cores: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", cores],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    return seconds, result.stderr + result.stdout


def rule_counts(log: str) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for match in re.finditer(r"^(?:local)?rule (\w+):", log, flags=re.M):
        counts[match.group(1)] += 1
    counts.pop("all", None)
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", default="all", help="snakemake --cores; default: all")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="msae-pipeline-"))
    root = copy_project(workdir / "project")
    total, log = run_snakemake(root, args.cores)
    noop, _ = run_snakemake(root, args.cores)
    counts = rule_counts(log)

    print(f"{'rule':<20} {'jobs':>5}")
    for rule, n in sorted(counts.items()):
        print(f"{rule:<20} {n:>5}")
    print(
        f"\nfull run: {total / 60:.1f} min ({sum(counts.values())} jobs, --cores {args.cores}); no-op rerun: {noop:.1f} s"
    )

    out = ROOT / "benchmarks" / "results" / "pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "full_run_seconds": round(total, 1),
                "noop_rerun_seconds": round(noop, 1),
                "jobs_per_rule": counts,
                "cores": args.cores,
                "cpu_count": os.cpu_count(),
                "machine": platform.platform(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
