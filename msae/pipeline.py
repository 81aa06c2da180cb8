"""Read the job graphs of both orchestrators as plain data: what each job runs, reads and writes.

The Snakefile and dvc.yaml describe one pipeline twice. `snakemake_steps` and `dvc_steps` expand
both (wildcards, `foreach`, `${...}` interpolation) into `Step`s so tests can prove they agree and
`msae sync` can check outputs before telling one tool what the other did.

Snakemake exposes no public API for the expanded job list, so this module uses its Workflow/DAG
objects (Snakemake 9); DVC's `Repo.index.stages` is its own documented Python entry point.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    """One job: `name` is the rule/stage address, paths are relative to the project root."""

    name: str
    command: str
    inputs: frozenset[str]
    outputs: frozenset[str]


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def snakemake_dag(root: Path, forceall: bool) -> Iterator[object]:
    """Parse the Snakefile under `root` and build its DAG; yields Snakemake's DAG object (its jobs
    carry rule, shell command, input, output, log and resources)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    root = root.resolve()
    with _working_directory(root), SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(),
            snakefile=root / "Snakefile",
            workdir=root,
        )
        workflow_api.dag(DAGSettings(forceall=forceall))
        workflow = workflow_api._workflow
        workflow._prepare_dag(forceall=forceall, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        yield workflow.dag
    # Snakemake's logger setup leaves handlers on the root logger; drop them so later output is ours.
    logging.getLogger("snakemake").handlers.clear()


def _job_step(job) -> Step:
    wildcards = ",".join(f"{k}={v}" for k, v in sorted(job.wildcards_dict.items()))
    name = f"{job.rule.name}[{wildcards}]" if wildcards else job.rule.name
    return Step(name, (job.shellcmd or "").strip(), frozenset(map(str, job.input)), frozenset(map(str, job.output)))


def snakemake_steps(root: str | Path = ".", pending_only: bool = False) -> list[Step]:
    """Every job of `snakemake all` (pending_only: only those Snakemake would run now), without
    the target rule `all`, which runs nothing."""
    with snakemake_dag(Path(root), forceall=not pending_only) as dag:
        jobs = dag.needrun_jobs(exclude_finished=False) if pending_only else dag.jobs
        steps = [_job_step(job) for job in jobs if job.shellcmd]
    return sorted(steps, key=lambda s: s.name)


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
