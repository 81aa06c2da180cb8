"""The whole pipeline on a tiny world, once through Snakemake and once through `dvc repro` in two
copies: identical results; switching tools with `msae sync`; editing one run reruns only that run;
`dvc metrics diff`, offline `dvc plots show` and `dvc exp run -S` work; `snakemake --report`."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pipeline_support import ROOT, copy_project, init_dvc_repo, run_tool, tiny_params

from msae.world.clip import builtin_weights_path

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Files that record how a run went rather than what it computed, and each tool's bookkeeping.
NOT_RESULTS = ("results/logs/",)
BOOKKEEPING = (".gitignore", ".snakemake_timestamp")
EDITED_RUN = "topk"


def world_clip(tmp_path_factory) -> str:
    """The shipped world CLIP when its weights exist, else a seeded random one (the pipeline's
    wiring, which is what is tested here, does not depend on the weights' quality)."""
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


def make_project(tmp_path_factory, name: str, pretrained: str, runs: tuple[str, ...]) -> Path:
    root = copy_project(tmp_path_factory.mktemp(name) / "project")
    params = tiny_params(yaml.safe_load((ROOT / "params.yaml").read_text()), pretrained, runs)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "blocklist.txt").write_text("")
    return init_dvc_repo(root)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_both(tmp_path_factory, runs: tuple[str, ...]) -> tuple[Path, Path]:
    """The tiny pipeline run by Snakemake in one copy and by `dvc repro` in another."""
    pretrained = world_clip(tmp_path_factory)
    by_snakemake = make_project(tmp_path_factory, "snakemake", pretrained, runs)
    by_dvc = make_project(tmp_path_factory, "dvc", pretrained, runs)
    checked(run_tool(["snakemake", "--cores", "1"], cwd=by_snakemake))
    checked(run_tool(["dvc", "repro"], cwd=by_dvc, **SINGLE_THREAD))
    return by_snakemake, by_dvc


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """One run per variant (slow: about 70 jobs)."""
    return run_both(tmp_path_factory, ("relu", "topk", "batchtopk", "matryoshka"))


def result_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted((root / "results").rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and path.name not in BOOKKEEPING and not rel.startswith(NOT_RESULTS):
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def assert_identical_results(by_snakemake: Path, by_dvc: Path) -> None:
    a, b = result_hashes(by_snakemake), result_hashes(by_dvc)
    assert "results/report/summary.json" in a and any(k.startswith("results/eval/") for k in a)
    assert sorted(a) == sorted(b)
    different = sorted(k for k in a if a[k] != b[k])
    assert not different, different


def test_one_run_through_both_tools_gives_identical_results(tmp_path_factory):
    """The CI-sized check: one TopK run through every stage of both tools."""
    assert_identical_results(*run_both(tmp_path_factory, ("topk",)))


@pytest.mark.slow
def test_one_run_per_variant_through_both_tools_gives_identical_results(projects):
    assert_identical_results(*projects)


@pytest.mark.slow
def test_sync_after_snakemake_records_outputs_without_rerunning(projects):
    by_snakemake, _ = projects
    checked(run_tool(["msae", "sync", "--after", "snakemake"], cwd=by_snakemake))
    status = checked(run_tool(["dvc", "status", "--json"], cwd=by_snakemake))
    assert json.loads(status.stdout) == {}
    assert ran_stages(checked(run_tool(["dvc", "repro"], cwd=by_snakemake, **SINGLE_THREAD)).stdout) == set()


@pytest.mark.slow
def test_sync_after_dvc_marks_outputs_up_to_date(projects):
    _, by_dvc = projects
    checked(run_tool(["msae", "sync", "--after", "dvc"], cwd=by_dvc))
    dry = checked(run_tool(["snakemake", "--cores", "1", "--dry-run"], cwd=by_dvc))
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_editing_one_run_reruns_only_that_run(projects):
    _, by_dvc = projects
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "add", "-A"], cwd=by_dvc, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny results"], cwd=by_dvc, check=True)
    params = yaml.safe_load((by_dvc / "params.yaml").read_text())
    params["runs"][EDITED_RUN]["k"] = 6
    (by_dvc / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = checked(run_tool(["dvc", "repro"], cwd=by_dvc, **SINGLE_THREAD)).stdout
    per_run = {"train", "evaluate", "concepts", "probe_similarity", "probe_bias"}
    assert ran_stages(output) == {f"{stage}@{EDITED_RUN}" for stage in per_run} | {"report", "check_params"}

    diff = json.loads(checked(run_tool(["dvc", "metrics", "diff", "--json"], cwd=by_dvc)).stdout)
    assert f"results/eval/{EDITED_RUN}/metrics.json" in diff
    assert "results/report/summary.json" in diff
    assert not any(f"results/eval/{run}/" in key for key in diff for run in params["runs"] if run != EDITED_RUN)


@pytest.mark.slow
def test_dvc_plots_render_offline(projects, tmp_path):
    _, by_dvc = projects
    template = tmp_path / "offline.html"
    checked(run_tool(["msae", "plots", "template", "--out", str(template)], cwd=by_dvc))
    out = tmp_path / "plots"
    checked(run_tool(["dvc", "plots", "show", "--html-template", str(template), "-o", str(out)], cwd=by_dvc))
    page = (out / "index.html").read_text()
    assert "https://cdn" not in page and "vegaEmbed" in page
    assert "results_report_pareto_csv" in page and "results_report_train_curves_csv" in page
    assert '"field": "run"' in page  # the repository's templates colour each run


@pytest.mark.slow
def test_dvc_exp_run_with_a_changed_param(projects):
    _, by_dvc = projects
    result = checked(run_tool(["dvc", "exp", "run", "-S", f"runs.{EDITED_RUN}.epochs=3"], cwd=by_dvc, **SINGLE_THREAD))
    assert f"train@{EDITED_RUN}" in ran_stages(result.stdout)
    shown = json.loads(checked(run_tool(["dvc", "exp", "show", "--json"], cwd=by_dvc)).stdout)
    assert shown


@pytest.mark.slow
def test_snakemake_report_is_self_contained(projects, tmp_path):
    by_snakemake, _ = projects
    report = tmp_path / "report.html"
    checked(run_tool(["snakemake", "--cores", "1", "--report", str(report)], cwd=by_snakemake))
    html = report.read_text()
    assert "metrics.json" in html and "pareto" in html and "<script" in html
    assert not re.search(r"<script[^>]+src=\"https?://", html)
