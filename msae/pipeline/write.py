"""`msae pipeline write`: (re)write the generated pipeline files (Snakemake rules, dvc.yaml) from
the stage table, or check that the committed ones are current."""

from __future__ import annotations

from pathlib import Path

from msae.config.project import PipelineWriteConfig
from msae.errors import MsaeError
from msae.io import write_text_atomic

RULES_FILE = Path("workflow/rules/stages.smk")
DVC_FILE = Path("dvc.yaml")


def generated_files() -> dict[Path, str]:
    """Path (relative to the project root) -> the text it must hold."""
    from msae.pipeline.render import dvc_yaml, snakemake_rules

    return {RULES_FILE: snakemake_rules(), DVC_FILE: dvc_yaml()}


def write_pipeline(config: PipelineWriteConfig) -> list[Path]:
    """Write (or with `check`, compare) every generated file; return those that changed."""
    changed = []
    for relative, text in generated_files().items():
        path = config.root / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            changed.append(path)
            if not config.check:
                write_text_atomic(path, text)
    if config.check and changed:
        raise MsaeError(f"out of date (run `msae pipeline write`): {', '.join(map(str, changed))}")
    return changed
