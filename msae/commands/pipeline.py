"""`msae pipeline write`: the generated pipeline files (Snakemake rules, dvc.yaml)."""

from __future__ import annotations

from msae.commands import action, single_action
from msae.config.project import PipelineWriteConfig

HELP = "write the Snakemake rules and dvc.yaml from the one table of stages"


@action("write", PipelineWriteConfig, HELP)
def run(config: PipelineWriteConfig) -> int:
    from msae.pipeline.write import write_pipeline

    changed = write_pipeline(config)
    verb = "checked" if config.check else "wrote"
    print(
        f"msae pipeline: {verb} the generated files; {len(changed)} changed"
        if not config.check
        else f"msae pipeline: {verb} the generated files; all current"
    )
    return 0


COMMANDS = (single_action("pipeline", 6, run),)
