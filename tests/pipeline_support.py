"""Shared helpers of the pipeline tests: copies of the project, both DAGs in one comparable form."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from msae import layout
from msae.pipeline.jobs import Step, dvc_steps, snakemake_steps

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_FILES = (
    ".gitignore",
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
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
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


GIT = ("git", "-c", "user.name=msae-tests", "-c", "user.email=tests@msae.invalid")


def commit_all(root: Path, message: str) -> None:
    """`git add -A && git commit` in `root`, as a user would (the project's .gitignore applies)."""
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", message, "--allow-empty"], cwd=root, check=True)


def init_dvc_repo(root: Path) -> Path:
    """Commit everything in the copy `root`: `dvc exp` and `dvc metrics diff` compare commits."""
    commit_all(root, "pipeline")
    return root


def copy_finished(source: Path, dest: Path) -> Path:
    """A copy of a finished project that keeps every modification time (what both tools judge
    by), Snakemake's records and DVC's cache, so one pipeline run serves several tests."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def modification_times(root: Path) -> dict[str, int]:
    """mtime (ns) of every result file but the logs."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in (root / "results").rglob("*")
        if p.is_file() and not p.relative_to(root).as_posix().startswith("results/logs/")
    }


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
    default: dict,
    pretrained: str,
    runs: tuple[str, ...] = ("relu", "topk", "batchtopk", "matryoshka"),
    extras: bool = False,
) -> dict:
    """A few hundred world images and one small run per variant (or only the `runs` named):
    the whole pipeline in minutes. `extras` adds a PCA baseline and a second seed of the first
    run (with its stability job) and a copy of the last run trained on both modalities; without,
    the pipeline has only the stages every run needs."""
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
    train = default["runs"][next(iter(default["runs"]))]["embeddings"]  # the image store of the train split
    params["runs"] = {name: {"embeddings": train, **every[name]} for name in runs}
    params["baselines"] = {"pca4": {"embeddings": train, "method": "pca", "components": 4, "seed": 0}} if extras else {}
    params["data"]["both"] = ["train"] if extras else []
    if extras:  # a run on both modalities (the train split's images and captions mixed)
        both = layout.both_store(params["data"]["name"], "train")
        params["runs"]["both"] = {"embeddings": both, **every[runs[-1]]}
    params["stability"].update({"runs": list(runs[:1]) if extras else [], "seeds": [1]})
    params["evaluate"].update({"cknna-batch": 100, "probe-max-epochs": 5, "device": "cpu"})
    params["evaluate_text"].update({"cknna-batch": 100, "device": "cpu"})
    params["concepts"].update({"gallery-limit": 3, "top-images": 4, "null-samples": 50, "device": "cpu"})
    # Latents by id: a tiny SAE need not have found a concept of a given name.
    params["probes"]["similarity"].update(
        {"concept": ["0", "1"], "queries": "random:3", "max-strips": 1, "device": "cpu"}
    )
    for name, probe in params["probes"].items():  # bias, and its control (trained without the correlation)
        if name.startswith("bias"):
            probe.update({"candidates": ["0", "1", "2"], "plot-top": 5, "device": "cpu"})
    return params


def world_clip(tmp_path_factory) -> str:
    """The shipped world CLIP when its weights exist, else a seeded random one (the pipeline's
    wiring, which is what is tested here, does not depend on the weights' quality)."""
    from msae.world.clip import builtin_weights_path

    if builtin_weights_path().is_file():
        return "builtin"
    import open_clip
    import torch
    from safetensors.torch import save_file

    from msae.world.clip import register_world_model

    register_world_model()
    torch.manual_seed(0)
    model = open_clip.create_model("msae-world")
    path = tmp_path_factory.mktemp("clip") / "random-world-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def make_project(tmp_path_factory, name: str, pretrained: str, runs: tuple[str, ...], extras: bool = False) -> Path:
    """A committed copy of the project with tiny params (no results yet)."""
    root = copy_project(tmp_path_factory.mktemp(name) / "project")
    params = tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()), pretrained, runs, extras)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "blocklist.txt").write_text("")
    return init_dvc_repo(root)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_both(tmp_path_factory, runs: tuple[str, ...], extras: bool = False) -> tuple[Path, Path]:
    """The tiny pipeline run by Snakemake in one copy and by `dvc repro` in another."""
    pretrained = world_clip(tmp_path_factory)
    by_snakemake = make_project(tmp_path_factory, "snakemake", pretrained, runs, extras)
    by_dvc = make_project(tmp_path_factory, "dvc", pretrained, runs, extras)
    checked(run_tool(["snakemake", "--cores", "1"], cwd=by_snakemake))
    checked(run_tool(["dvc", "repro"], cwd=by_dvc, **SINGLE_THREAD))
    return by_snakemake, by_dvc


_FINISHED: dict[tuple[str, ...], tuple[Path, Path]] = {}


def finished_projects(tmp_path_factory, runs: tuple[str, ...]) -> tuple[Path, Path]:
    """`run_both`, once per session and set of runs (test modules share the runs); tests that
    change a project work on a `copy_finished` of it."""
    if runs not in _FINISHED:
        _FINISHED[runs] = run_both(tmp_path_factory, runs)
    return _FINISHED[runs]
