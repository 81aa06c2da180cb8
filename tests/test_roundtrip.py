"""Switching orchestrators never recomputes: after `msae sync` in either direction, in every order
(Snakemake → DVC → Snakemake, DVC → Snakemake → DVC, a second clone after `dvc pull`, a run edited
and recomputed by DVC), both `snakemake -n` and `dvc status` have nothing to do, and recording in
DVC rewrote no result file. CI runs the clone test (it breaks on each mechanism); the others are
slow (about 1.5 min each on 2 busy cores; the tiny pipeline is shared with test_pipeline_e2e).

Snakemake is asked with `--max-checksum-file-size 0`: it then judges every input by its
modification time, as it does for files over 1 MB, so the tiny pipeline's small files show what a
real run's embedding stores and checkpoints would (with checksums, a rewritten small file passes
unnoticed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from pipeline_support import (
    SINGLE_THREAD,
    checked,
    commit_all,
    copy_finished,
    finished_projects,
    modification_times,
    run_tool,
)

from msae.pipeline.jobs import snakemake_steps

RUNS = ("topk",)  # the same tiny project as test_pipeline_e2e's CI test: the runs are shared


def assert_nothing_to_do(root: Path) -> None:
    """Both tools agree the workspace is finished (Snakemake judging by modification times)."""
    pending = snakemake_steps(root, pending_only=True, checksums=False)
    assert not pending, [s.name for s in pending]
    status = checked(run_tool(["dvc", "status", "--json"], cwd=root))
    assert json.loads(status.stdout) == {}, status.stdout


BOOKKEEPING = (".gitignore", ".snakemake_timestamp")  # DVC's and Snakemake's own marks


def sync(root: Path, after: str) -> None:
    """`msae sync --after AFTER`; recording Snakemake's results in DVC must not rewrite any file."""
    before = modification_times(root)
    checked(run_tool(["msae", "sync", "--after", after], cwd=root))
    now = modification_times(root)
    assert not [k for k in set(now) ^ set(before) if not k.endswith(BOOKKEEPING)]
    if after == "snakemake":
        rewritten = sorted(k for k in before if now[k] != before[k])
        assert not rewritten, rewritten[:10]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    return finished_projects(tmp_path_factory, RUNS)


def test_clone_pulled_from_a_dvc_remote_then_switched_both_ways(projects, tmp_path):
    """The CI check, DVC → Snakemake → DVC in a second clone: clone A (run by `dvc repro`) pushes to
    a DVC remote (a local folder); clone B gets the code from git and the results from the remote,
    `msae sync --after dvc` (Snakemake touches every job: DVC's .gitignore files are missing and
    Snakemake's timestamps appear, both outside DVC's hashes), then `msae sync --after snakemake`
    (recording rewrites no file). Each mechanism, broken, fails this test."""
    a = copy_finished(projects[1], tmp_path / "a")
    checked(run_tool(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], cwd=a))
    checked(run_tool(["dvc", "push", "--quiet"], cwd=a))
    commit_all(a, "results")
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    checked(run_tool(["dvc", "pull", "--quiet"], cwd=b))
    sync(b, "dvc")
    assert_nothing_to_do(b)
    sync(b, "snakemake")
    assert_nothing_to_do(b)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("project", "first", "then"),
    [(0, "snakemake", "dvc"), (1, "dvc", "snakemake")],
    ids=["snakemake-then-dvc-then-snakemake", "dvc-then-snakemake-then-dvc"],
)
def test_either_tool_then_the_other(projects, tmp_path, project, first, then):
    """The pipeline run by one tool, synced after it, then synced the other way: nothing to do each time."""
    root = copy_finished(projects[project], tmp_path / "project")
    sync(root, first)
    assert_nothing_to_do(root)
    sync(root, then)
    assert_nothing_to_do(root)


@pytest.mark.slow
def test_run_edited_and_recomputed_by_dvc_is_not_rerun_by_snakemake(projects, tmp_path):
    """Snakemake's records of the edited run's jobs hold the old parameters; `snakemake --touch`
    updates them along with the modification times."""
    root = copy_finished(projects[0], tmp_path / "project")
    sync(root, "snakemake")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["runs"]["topk"]["k"] = 6
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    checked(run_tool(["dvc", "repro"], cwd=root, **SINGLE_THREAD))
    assert "train[run=topk]" in {s.name for s in snakemake_steps(root, pending_only=True)}  # params changed
    sync(root, "dvc")
    assert_nothing_to_do(root)
