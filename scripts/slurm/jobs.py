"""What SLURM recorded about one Snakemake run, checked against what Snakemake scheduled.

    python scripts/slurm/jobs.py check RUN_LOG --project DIR [--json FILE]

RUN_LOG is the output of `snakemake --profile workflow/profiles/slurm` (it names the run's
SLURM run ID, the job name of all its jobs, and counts the jobs per rule). The check fails
(exit 1) unless every scheduled job is in `sacct`, completed, and a job holds a GPU exactly
when its rule declares `gpu=1` in the Snakefile of DIR. It prints one line per rule with the
measured peak memory (MaxRSS summed over the job's steps) and run time beside what was requested:
the numbers the profile's per-rule resources are set from ("CPU use": CPU time over cores held
times wall time, how well the rule's jobs used the cores they asked for).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

FIELDS = (
    "JobID",
    "JobName",
    "Partition",
    "Account",
    "AllocTRES",
    "AllocCPUS",
    "ReqMem",
    "Timelimit",
    "State",
    "ExitCode",
    "Elapsed",
    "TotalCPU",
    "MaxRSS",
    "Comment",
)
UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}


@dataclass
class Job:
    """One SLURM job of the run, its steps folded in (max_rss_mb: see parse_sacct)."""

    job_id: str
    rule: str
    wildcards: str
    partition: str
    account: str
    alloc_tres: str
    cpus: int
    req_mem: str
    time_limit: str
    state: str
    exit_code: str
    elapsed_s: int
    cpu_s: float
    max_rss_mb: float

    @property
    def gpus(self) -> int:
        found = re.search(r"gres/gpu=(\d+)", self.alloc_tres)
        return int(found.group(1)) if found else 0


def megabytes(value: str) -> float:
    """sacct's MaxRSS ('322148K', '1.5G', '' for none) in MB."""
    if not value:
        return 0.0
    unit = value[-1]
    return float(value[:-1]) * UNITS[unit] if unit in UNITS else float(value) / 2**20


def seconds(value: str) -> float:
    """sacct's [D-]HH:MM:SS or MM:SS[.mmm] (Elapsed, TotalCPU) in seconds."""
    days, _, clock = value.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def parse_sacct(text: str) -> list[Job]:
    """Jobs from `sacct -P -n --format=<FIELDS>` lines: the job line plus its steps' MaxRSS.

    A job's memory is the sum of its steps' peaks: the batch step (the plugin's Snakemake) waits
    for the srun step that runs the rule, so both live at once, and a cgroup counts them together.
    """
    rows = [dict(zip(FIELDS, line.split("|"), strict=True)) for line in text.splitlines() if line.strip()]
    rss: dict[str, float] = defaultdict(float)
    for row in rows:
        job_id = row["JobID"].split(".")[0]
        rss[job_id] += megabytes(row["MaxRSS"])
    jobs = []
    for row in rows:
        if "." in row["JobID"]:
            continue
        rule, _, wildcards = row["Comment"].removeprefix("rule_").partition("_wildcards_")
        jobs.append(
            Job(
                row["JobID"],
                rule,
                wildcards,
                row["Partition"],
                row["Account"],
                row["AllocTRES"],
                int(row["AllocCPUS"] or 0),
                row["ReqMem"],
                row["Timelimit"],
                row["State"],
                row["ExitCode"],
                int(seconds(row["Elapsed"])),
                round(seconds(row["TotalCPU"]), 1),
                round(rss[row["JobID"]], 1),
            )
        )
    return jobs


def run_facts(log: str) -> tuple[str, Counter]:
    """The SLURM run ID and the jobs per rule (less `all`) that a Snakemake log announces."""
    found = re.search(r"SLURM run ID: (\S+)", log)
    if not found:
        raise SystemExit("the log names no SLURM run ID: was it a run with the slurm executor?")
    stats = re.search(r"Job stats:\njob\s+count\n-+\s+-+\n(.*?)\ntotal", log, re.S)
    if not stats:
        raise SystemExit("the log has no 'Job stats' table")
    counts = Counter()
    for line in stats.group(1).splitlines():
        name, count = line.split()
        if name != "all":
            counts[name] = int(count)
    return found.group(1), counts


def gpu_rules(project: Path) -> set[str]:
    """Rules whose jobs declare gpu=1 in the Snakefile (a dry run without any profile)."""
    command = ["--dry-run", "--forceall", "--nolock", "--cores", "1", "--workflow-profile", "none"]
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", *command], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    rules = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        name = re.match(r"(?:local)?rule (\w+):", block)
        if name and re.search(r"resources:.*\bgpu=1\b", block):
            rules.add(name.group(1))
    return rules


def sacct(name: str) -> str:
    return subprocess.run(
        ["sacct", "-P", "-n", "--name", name, "--format", ",".join(FIELDS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def problems(jobs: list[Job], expected: Counter, gpu: set[str]) -> list[str]:
    found = Counter(job.rule for job in jobs)
    lines = [
        f"rule {rule}: {expected[rule]} job(s) scheduled, {found[rule]} in sacct"
        for rule in sorted(set(expected) | set(found))
        if expected[rule] != found[rule]
    ]
    for job in jobs:
        label = f"job {job.job_id} ({job.rule} {job.wildcards})".replace(" )", ")")
        if job.state != "COMPLETED" or job.exit_code != "0:0":
            lines.append(f"{label}: {job.state} exit {job.exit_code}")
        if (job.rule in gpu) != (job.gpus > 0):
            declared = "gpu=1" if job.rule in gpu else "none"
            lines.append(f"{label}: holds {job.gpus} GPU(s) but its rule declares {declared}")
    if not gpu:
        lines.append("no rule declares gpu=1: nothing tested the GPU requests")
    return lines


def table(jobs: list[Job]) -> str:
    by_rule: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_rule[job.rule].append(job)
    head = (
        f"{'rule':<17} {'jobs':>4} {'partition':<9} {'cpus':>4} {'gpus':>4} {'ReqMem':>7} {'MaxRSS MB':>9} "
        f"{'Timelimit':>10} {'Elapsed s':>9} {'CPU use':>7}"
    )
    lines = [head, "-" * len(head)]
    for rule, group in sorted(by_rule.items()):
        first = group[0]
        # How much of the cores it held the rule kept busy (CPU time over cores x wall time).
        held = sum(j.elapsed_s * j.cpus for j in group)
        use = f"{sum(j.cpu_s for j in group) / held:.0%}" if held else "-"
        lines.append(
            f"{rule:<17} {len(group):>4} {first.partition:<9} {first.cpus:>4} {first.gpus:>4} {first.req_mem:>7} "
            f"{max(j.max_rss_mb for j in group):>9.0f} {first.time_limit:>10} {max(j.elapsed_s for j in group):>9} "
            f"{use:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a run's jobs in sacct and print their resources")
    check.add_argument("log", type=Path, help="output of the snakemake run")
    check.add_argument("--project", type=Path, required=True, help="the project the run ran in")
    check.add_argument("--json", type=Path, help="also write the jobs here")
    args = parser.parse_args(argv)
    name, expected = run_facts(args.log.read_text())
    jobs = parse_sacct(sacct(name))
    print(f"SLURM run {name}: {len(jobs)} job(s) in sacct, {sum(expected.values())} scheduled")
    print(table(jobs))
    if args.json:
        args.json.write_text(json.dumps([asdict(job) for job in jobs], indent=1))
    found = problems(jobs, expected, gpu_rules(args.project))
    for line in found:
        print("FAIL:", line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
