"""`msae sync` helpers: the recording command per direction and readable `dvc status` lines (the
refusals against real projects are in test_pipeline_dag.py; every order of switching, end to end,
in test_roundtrip.py)."""

from __future__ import annotations

import sys

import pytest

from msae.config.project import SyncConfig
from msae.errors import MsaeError
from msae.sync import describe_dvc_status, sync, sync_command


def test_sync_commands():
    # recording Snakemake's outputs must not rewrite them (a new mtime makes Snakemake rerun)
    assert sync_command("snakemake") == [sys.executable, "-m", "dvc", "commit", "--force", "--no-relink", "--quiet"]
    assert sync_command("dvc")[:4] == [sys.executable, "-m", "snakemake", "--touch"]
    with pytest.raises(MsaeError, match="--after 'make'"):
        sync_command("make")


def test_dvc_status_lines_name_stage_and_change():
    status = {
        "train@topk": [{"changed deps": {"params.yaml": {"modified": ["runs.topk"]}}}, "changed command"],
        "report": [{"changed outs": {"results/report": "deleted"}}],
    }
    assert describe_dvc_status(status) == ["report (changed outs)", "train@topk (changed deps; changed command)"]


def test_sync_outside_a_project_is_refused(tmp_path):
    with pytest.raises(MsaeError, match="not an msae project"):
        sync(SyncConfig(after="dvc", root=tmp_path))
