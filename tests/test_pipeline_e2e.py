"""The whole pipeline on a tiny world, once through Snakemake and once through `dvc repro` in two
copies: identical results; logs that hold results, not progress bars; the headline metrics DVC
compares; editing one run reruns only that run; `dvc metrics diff`, offline `dvc plots show` and
`dvc exp run -S` work; `snakemake --report`. Switching tools (`msae sync`): test_roundtrip.py."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from pipeline_support import SINGLE_THREAD, checked, finished_projects, run_both, run_tool

# Files that record how a run went rather than what it computed, and each tool's bookkeeping.
NOT_RESULTS = ("results/logs/",)
BOOKKEEPING = (".gitignore", ".snakemake_timestamp")
EDITED_RUN = "topk"


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """One run per variant, a PCA baseline and a second seed (slow: about 90 jobs)."""
    return run_both(tmp_path_factory, ("relu", "topk", "batchtopk", "matryoshka"), extras=True)


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
    assert_identical_results(*finished_projects(tmp_path_factory, ("topk",)))


def test_logs_hold_each_result_and_no_progress_bar(tmp_path_factory):
    for root in finished_projects(tmp_path_factory, ("topk",)):
        logs = sorted((root / "results" / "logs").rglob("*.log"))
        assert len(logs) >= 15
        for log in logs:
            text = log.read_text()
            assert "\r" not in text and "it/s]" not in text, log  # bars stayed on the terminal
            assert text.endswith("\n") and text.strip(), log  # ends with the command's result line
        assert (root / "results/logs/report.log").read_text().splitlines()[-1].startswith("msae report: wrote")


def test_report_links_the_concept_browser(tmp_path_factory):
    by_snakemake, _ = finished_projects(tmp_path_factory, ("topk",))
    report = by_snakemake / "results" / "report"
    assert '<a href="browser/index.html">Open the concept browser</a>' in (report / "index.html").read_text()
    assert (report / "browser" / "index.html").is_file()


def test_dvc_metrics_are_the_headline_of_each_run(tmp_path_factory):
    """One small file per run, nothing listed twice: `dvc metrics show` is one row per run."""
    _, by_dvc = finished_projects(tmp_path_factory, ("topk",))
    shown = json.loads(checked(run_tool(["dvc", "metrics", "show", "--json"], cwd=by_dvc)).stdout)
    files = shown[""]["data"]
    assert set(files) == {"results/report/headline/topk.json"}
    headline = files["results/report/headline/topk.json"]["data"]
    metrics = json.loads((by_dvc / "results/eval/topk/metrics.json").read_text())
    assert headline["fvu"] == metrics["dense"]["fvu"] and headline["sparse_fvu"] == metrics["sparse"]["fvu"]
    assert 5 <= len(headline) <= 8


@pytest.mark.slow
def test_one_run_per_variant_through_both_tools_gives_identical_results(projects):
    assert_identical_results(*projects)
    by_snakemake, _ = projects
    results = by_snakemake / "results"  # the run on both modalities, evaluated on each, in the report
    assert json.loads((results / "sae/both/config.json").read_text())["data"]["modality"] == "both"
    assert (results / "eval/both/metrics.json").is_file() and (results / "eval/both/text_test/metrics.json").is_file()
    table = (results / "report/table.md").read_text()
    assert "| both · " in table and "trained on image+text" in table


@pytest.mark.slow
def test_editing_one_run_reruns_only_that_run(projects):
    _, by_dvc = projects
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "add", "-A"], cwd=by_dvc, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny results"], cwd=by_dvc, check=True)
    params = yaml.safe_load((by_dvc / "params.yaml").read_text())
    params["runs"][EDITED_RUN]["k"] = 6
    (by_dvc / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = ran_stages(checked(run_tool(["dvc", "repro"], cwd=by_dvc, **SINGLE_THREAD)).stdout)
    assert {f"train@{EDITED_RUN}", f"evaluate@{EDITED_RUN}", "report"} <= ran
    others = {s for s in ran - {"report", "check_params"} if s.partition("@")[2].split("-")[0] != EDITED_RUN}
    assert not others, others  # every other job is a job of the edited run

    diff = json.loads(checked(run_tool(["dvc", "metrics", "diff", "--json"], cwd=by_dvc)).stdout)
    assert set(diff) == {f"results/report/headline/{EDITED_RUN}.json"}  # the other runs did not change


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
