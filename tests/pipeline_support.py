"""Shared helpers of the pipeline tests: copies of the project, both DAGs in one comparable form."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

from msae.pipeline.jobs import Step, dvc_steps, snakemake_steps

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_FILES = (
    "Snakefile",
    "dvc.yaml",
    "params.yaml",
    "workflow",
    "profiles",
    "configs",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".dvcignore",
)
# The one intended difference: DVC validates params.yaml in a first stage, the Snakefile while parsed.
DVC_ONLY = {"check_params"}


def copy_project(dest: Path) -> Path:
    """The pipeline definition files of this checkout, copied to `dest` (no results)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)  # DVC reads its stages from a git repo
    return dest


def init_dvc_repo(root: Path) -> Path:
    """Commit everything in the copy `root`: `dvc exp` and `dvc metrics diff` compare commits."""
    git = ["git", "-c", "user.name=msae-tests", "-c", "user.email=tests@msae.invalid"]
    (root / ".gitignore").write_text("/results/logs/\n/.snakemake/\n")
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline"], cwd=root, check=True)
    return root


def tool_env(**extra: str) -> dict[str, str]:
    """The environment of a pipeline run: this interpreter's `msae`, `dvc`, `snakemake` first on PATH."""
    env = dict(os.environ, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tool(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m <tool> ...` from this environment in `cwd`, capturing output."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=tool_env(**env))


def normalise(steps: list[Step]) -> set[tuple[str, frozenset[str], frozenset[str]]]:
    """(argv, inputs, outputs) per job, each input replaced by the job outputs it stands for (the
    command compared as the shell splits it: the tools quote differently).

    A Snakemake input is a file or a directory output; a DVC dependency may also be a folder that
    holds several outputs (DVC links a stage to every output under a folder it depends on). Mapping
    both to "the outputs consumed" makes the two descriptions comparable; inputs no job makes
    (params.yaml, a class-name file, an external image folder) stay as they are.
    """
    produced = {out for step in steps for out in step.outputs}

    def consumed(path: str) -> set[str]:
        covering = {o for o in produced if o == path or path.startswith(o + "/") or o.startswith(path + "/")}
        return covering or {path}

    return {(step.argv, frozenset().union(*(consumed(p) for p in step.inputs)), step.outputs) for step in steps}


def both_dags(root: Path) -> tuple[set, set]:
    """Normalised Snakemake and DVC DAGs of the project at `root`."""
    dvc = [s for s in dvc_steps(root) if s.name.split("@")[0] not in DVC_ONLY]
    return normalise(snakemake_steps(root)), normalise(dvc)


def tiny_params(
    default: dict, pretrained: str, runs: tuple[str, ...] = ("relu", "topk", "batchtopk", "matryoshka")
) -> dict:
    """A few hundred world images and one small run per variant (or only the `runs` named):
    the whole pipeline in minutes."""
    params = copy.deepcopy(default)
    params["worlds"]["shapes"].update({"n-train": 400, "n-val": 0, "n-test": 200, "n-bias": 160, "workers": 1})
    params["backbone"]["pretrained"] = pretrained
    params["embed"]["options"].update({"batch-size": 128, "device": "cpu"})
    params["vocab"].update({"n-common": 60, "blocklist": "blocklist.txt"})
    base = {"expansion": 2, "epochs": 2, "batch-size": 64, "lr": 0.001, "seed": 0, "device": "cpu"}
    every = {
        "relu": {"variant": "relu", **base, "l1": 0.001},
        "topk": {"variant": "topk", **base, "k": 8},
        "batchtopk": {"variant": "batchtopk", **base, "k": 8},
        "matryoshka": {"variant": "matryoshka", **base, "nesting-start": 16, "weighting": "rw"},
    }
    params["runs"] = {name: every[name] for name in runs}
    params["evaluate"].update({"cknna-batch": 100, "probe-max-epochs": 5, "device": "cpu"})
    params["concepts"].update({"gallery-limit": 3, "top-images": 4, "null-samples": 50, "device": "cpu"})
    # Latents by id: a tiny SAE need not have found a concept of a given name.
    params["probes"]["similarity"].update(
        {"concept": ["0", "1"], "queries": "random:3", "max-strips": 1, "device": "cpu"}
    )
    params["probes"]["bias"].update({"candidates": ["0", "1", "2"], "plot-top": 5, "device": "cpu"})
    return params
