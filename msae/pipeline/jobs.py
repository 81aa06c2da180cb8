"""Read the job lists of both orchestrators back as plain data: what each job runs, reads, writes.

Snakemake's jobs come from its dry run (`snakemake -n -p`, the public command line: every job's
rule, input, output and shell command); DVC's from `Repo.index.stages`, its documented Python
entry point. Tests prove both agree; `msae sync` checks outputs before telling one tool what the
other did.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from msae.errors import MsaeError


@dataclass(frozen=True)
class Step:
    """One job: `name` is the rule/stage address, paths are relative to the project root."""

    name: str
    command: str
    inputs: frozenset[str]
    outputs: frozenset[str]
    log: str = ""
    resources: frozenset[str] = frozenset()

    @property
    def argv(self) -> tuple[str, ...]:
        """The command as a shell would split it (quoting styles differ between the tools)."""
        return tuple(shlex.split(self.command))


def _paths(text: str) -> frozenset[str]:
    return frozenset(p.strip() for p in text.split(", ") if p.strip())


def _parse_dry_run(text: str) -> Iterator[Step]:
    """Jobs of `snakemake -n -p` output: a `rule NAME:` block, then its fields, then the command."""
    block: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            block = {"rule": line.split(" ", 1)[1][:-1]}
        elif block and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            block[key] = value
        elif block and line.startswith("Shell command: "):
            if line.strip() == "Shell command: None":  # a target rule such as `all` runs nothing
                block = {}
                continue
            wildcards = block.get("wildcards", "")
            name = f"{block['rule']}[{','.join(sorted(wildcards.split(', ')))}]" if wildcards else block["rule"]
            resources = frozenset(r.strip() for r in block.get("resources", "").split(",") if r.strip())
            yield Step(
                name,
                line[len("Shell command: ") :].strip(),
                _paths(block.get("input", "")),
                _paths(block.get("output", "")),
                block.get("log", ""),
                resources,
            )
            block = {}


def snakemake_steps(root: str | Path = ".", pending_only: bool = False, checksums: bool = True) -> list[Step]:
    """Every job of `snakemake all` (pending_only: only those Snakemake would run now), without
    the target rule `all`, which runs nothing. `checksums=False` judges inputs by modification
    time alone, as Snakemake does for every file over 1 MB (so small test files show what a real
    run's large ones would)."""
    command = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--nolock"]
    if not pending_only:
        command.append("--forceall")
    if not checksums:
        command += ["--max-checksum-file-size", "0"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(command, cwd=Path(root), capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise MsaeError(f"`snakemake -n` failed in {root}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return sorted(_parse_dry_run(result.stdout + "\n" + result.stderr), key=lambda s: s.name)


def dvc_steps(root: str | Path = ".") -> list[Step]:
    """Every stage of dvc.yaml after `foreach` and `${...}` expansion; params dependencies are left
    out (they are DVC's bookkeeping of what the command line already contains)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(Path(root).resolve())) as repo:
        steps = [
            Step(
                stage.name,
                (stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd)).strip(),
                frozenset(dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)),
                frozenset(out.def_path for out in stage.outs),
            )
            for stage in repo.index.stages
        ]
    return sorted(steps, key=lambda s: s.name)


def missing_outputs(root: str | Path, steps: Iterable[Step]) -> list[str]:
    """Declared outputs that do not exist under `root`, in a stable order."""
    root = Path(root)
    return sorted(out for step in steps for out in step.outputs if not (root / out).exists())
