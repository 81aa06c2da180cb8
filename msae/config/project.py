"""Project-level commands: `msae params check | schema`, `msae sync`, `msae plots template`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from msae.config.base import PathOption, StageConfig, opt


class ParamsCheckConfig(StageConfig):
    """Validate a params file; exit 2 naming every bad key."""

    path: PathOption = opt(Path("params.yaml"), "params file", positional=True)


class ParamsSchemaConfig(StageConfig):
    """Print (or write) the JSON schema of params.yaml, generated from the stage configs."""

    out: PathOption | None = opt(None, "write the schema to this file instead of standard output")


class SyncConfig(StageConfig):
    """Record what one orchestrator produced in the other, without recomputing."""

    after: Literal["snakemake", "dvc"] = opt(help="the tool that produced the current results")
    root: PathOption = opt(Path("."), "project folder (Snakefile, dvc.yaml, params.yaml)")
    check: bool = opt(False, "only run the checks; record nothing")


class PlotsTemplateConfig(StageConfig):
    """An HTML template with vega inlined so `dvc plots show` renders without internet."""

    out: PathOption = opt(
        Path(".dvc/plots/offline.html"), "template file; use it with `dvc plots show --html-template FILE`"
    )


class PipelineWriteConfig(StageConfig):
    """Write the Snakemake rules and dvc.yaml from the stage table."""

    root: PathOption = opt(Path("."), "project folder (where Snakefile and dvc.yaml live)")
    check: bool = opt(False, "only check that the files are current; exit 2 naming those that are not")
