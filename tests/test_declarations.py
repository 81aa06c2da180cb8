"""One declaration per fact: the generated pipeline files and params schema are current, and an
option added to one stage config reaches the parser, the schema and `msae params check` with no
other edit."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from msae.cli import build_parser
from msae.config.base import opt
from msae.config.evaluate import EvaluateConfig
from msae.config.project import PipelineWriteConfig
from msae.errors import MsaeError
from msae.pipeline import params as params_module
from msae.pipeline.schema import SHIPPED, params_schema, schema_text
from msae.pipeline.write import write_pipeline

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_generated_pipeline_files_are_current():
    write_pipeline(PipelineWriteConfig(root=ROOT, check=True))


def test_a_stale_generated_file_is_named(tmp_path):
    (tmp_path / "workflow" / "rules").mkdir(parents=True)
    with pytest.raises(MsaeError, match="stages.smk"):
        write_pipeline(PipelineWriteConfig(root=tmp_path, check=True))


def test_shipped_params_schema_is_current():
    assert SHIPPED.read_text() == schema_text(), "run `msae params schema --out msae/assets/params.schema.json`"


def _clear_caches() -> None:
    params_module.section_type.cache_clear()
    params_module.params_model.cache_clear()


@pytest.fixture
def new_option():
    """Add `new-knob` (an int >= 1, default 3) to EvaluateConfig, as a developer would."""
    info = opt(3, "a knob added by the test", ge=1)
    info.annotation = int
    info.alias = "new-knob"
    info.alias_priority = 2
    info.validation_alias = info.serialization_alias = "new-knob"
    EvaluateConfig.__pydantic_fields__["new_knob"] = info
    EvaluateConfig.model_rebuild(force=True)
    _clear_caches()
    yield "new-knob"
    del EvaluateConfig.__pydantic_fields__["new_knob"]
    EvaluateConfig.model_rebuild(force=True)
    _clear_caches()


def _evaluate_parser():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices["evaluate"]


def test_an_added_option_reaches_parser_schema_and_params_check(new_option):
    options = {s for a in _evaluate_parser()._actions for s in a.option_strings}
    assert f"--{new_option}" in options
    assert "a knob added by the test" in _evaluate_parser().format_help()

    schema = params_schema()
    evaluate = schema["properties"]["evaluate"]
    ref = evaluate.get("$ref", "").rsplit("/", 1)[-1]
    properties = schema["$defs"][ref]["properties"] if ref else evaluate["properties"]
    assert properties[new_option]["minimum"] == 1

    good = copy.deepcopy(DEFAULT)
    good["evaluate"][new_option] = 5
    params_module.validate_params(good)
    bad = copy.deepcopy(DEFAULT)
    bad["evaluate"][new_option] = 0
    with pytest.raises(MsaeError, match=f"evaluate.{new_option}: 0: input should be greater than or equal to 1"):
        params_module.validate_params(bad)


def test_without_the_declaration_the_key_is_refused():
    """Negative control for the test above: the same params key is unknown without the field."""
    params = copy.deepcopy(DEFAULT)
    params["evaluate"]["new-knob"] = 5
    with pytest.raises(MsaeError, match="evaluate.new-knob: unknown"):
        params_module.validate_params(params)
    options = {s for a in _evaluate_parser()._actions for s in a.option_strings}
    assert "--new-knob" not in options
