"""Hand results from one orchestrator to the other without recomputing them.

After `snakemake`, DVC has not recorded the outputs: `dvc commit --force --no-relink` hashes them
into dvc.lock and its cache without rewriting them (a relinked file gets a new modification time,
and Snakemake would then rerun everything downstream of it). After `dvc repro` or `dvc pull`,
Snakemake sees files it did not make: `snakemake --touch` marks them up to date, in job order (the
`.snakemake_timestamp` it leaves in directory outputs is in .dvcignore, so DVC's hashes stay the
same). Each direction is refused when it would record something false: outputs missing,
Snakemake still having jobs to run, or `dvc status` not clean; and each is verified afterwards:
neither tool may then have anything to do.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from msae.config.project import SyncConfig
from msae.errors import MsaeError
from msae.pipeline.jobs import dvc_steps, missing_outputs, snakemake_steps

TOOLS = ("snakemake", "dvc")
SHOWN = 8


def _listing(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def dvc_status(root: Path) -> dict[str, Any]:
    """`dvc status` as a dict: {} when every stage matches dvc.lock."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.status()


def describe_dvc_status(status: Mapping[str, Any]) -> list[str]:
    """One line per changed stage: `train@topk_a (changed outs, changed command)`."""
    lines = []
    for stage, changes in sorted(status.items()):
        kinds = [c if isinstance(c, str) else ", ".join(c) for c in changes]
        lines.append(f"{stage} ({'; '.join(kinds)})")
    return lines


def check_after_snakemake(root: Path) -> None:
    """Refuse `dvc commit -f` unless Snakemake is finished and every DVC output exists."""
    pending = snakemake_steps(root, pending_only=True)
    if pending:
        raise MsaeError(
            f"Snakemake still has {len(pending)} job(s) to run ({_listing([s.name for s in pending])}); "
            "committing now would record outdated outputs in dvc.lock. Run `snakemake` first."
        )
    missing = missing_outputs(root, dvc_steps(root))
    if missing:
        raise MsaeError(
            f"{len(missing)} output(s) declared in dvc.yaml do not exist ({_listing(missing)}); "
            "the Snakefile and dvc.yaml disagree, or the run was cleaned. Run `snakemake` first."
        )


def check_after_dvc(root: Path) -> None:
    """Refuse `snakemake --touch` unless dvc.lock matches the workspace and all outputs exist."""
    status = dvc_status(root)
    if status:
        raise MsaeError(
            "`dvc status` is not clean, so the files on disk are not what dvc.lock records: "
            f"{_listing(describe_dvc_status(status))}. Run `dvc repro` (or `dvc pull`) first."
        )
    missing = missing_outputs(root, snakemake_steps(root))
    if missing:
        raise MsaeError(
            f"{len(missing)} output(s) of the Snakefile do not exist ({_listing(missing)}); "
            "touching would not make them. Run `dvc repro` or `dvc pull` first."
        )


def sync_command(after: str) -> list[str]:
    """The command that records the other tool's outputs (neither rewrites a result file)."""
    if after == "snakemake":
        return [sys.executable, "-m", "dvc", "commit", "--force", "--no-relink", "--quiet"]
    if after == "dvc":
        return [sys.executable, "-m", "snakemake", "--touch", "--cores", "1", "--quiet"]
    raise MsaeError(f"--after {after!r}: choose from {', '.join(TOOLS)}")


def sync(config: SyncConfig) -> list[str]:
    """`msae sync`: check, then (unless `check`) run the recording command in `root`; return it."""
    root = config.root.resolve()
    command = sync_command(config.after)
    if not (root / "Snakefile").is_file() or not (root / "dvc.yaml").is_file():
        raise MsaeError(f"{root}: not an msae project (needs Snakefile and dvc.yaml)")
    (check_after_snakemake if config.after == "snakemake" else check_after_dvc)(root)
    if not config.check:
        result = subprocess.run(command, cwd=root)
        if result.returncode != 0:
            raise MsaeError(f"`{' '.join(command[2:])}` failed with exit status {result.returncode}")
        verify_synced(root, config.after)
    return command


def verify_synced(root: Path, after: str) -> None:
    """The promise of `msae sync`, checked: neither tool has anything left to do."""
    done = "`dvc commit`" if after == "snakemake" else "`snakemake --touch`"
    status = dvc_status(root)
    if status:
        raise MsaeError(f"after {done}, `dvc status` still lists: {_listing(describe_dvc_status(status))}")
    pending = snakemake_steps(root, pending_only=True)
    if pending:
        raise MsaeError(
            f"after {done}, Snakemake would still run {len(pending)} job(s): {_listing([s.name for s in pending])}"
        )
