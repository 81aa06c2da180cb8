"""`msae params check | schema`: validate params.yaml before any pipeline job starts (the first DVC
stage; the Snakefile runs the same check when it is parsed), and print the schema derived from
the stage configs."""

from __future__ import annotations

from msae.commands import Group, action
from msae.config.project import ParamsCheckConfig, ParamsSchemaConfig


@action("check", ParamsCheckConfig, "validate a params file; exit 2 naming every bad key")
def run_check(config: ParamsCheckConfig) -> int:
    from msae.pipeline.params import load_params

    params = load_params(config.path)
    print(f"msae params: {config.path} is valid ({len(params['runs'])} runs: {', '.join(params['runs'])})")
    return 0


@action("schema", ParamsSchemaConfig, "the JSON schema of params.yaml, generated from the stage configs")
def run_schema(config: ParamsSchemaConfig) -> int:
    from msae.io import write_text_atomic
    from msae.pipeline.schema import schema_text

    text = schema_text()
    if config.out is None:
        print(text, end="")
    else:
        write_text_atomic(config.out, text)
        print(f"msae params: wrote the params schema to {config.out}")
    return 0


COMMANDS = (
    Group(
        "params",
        help="check params.yaml (every key, range and cross-key rule) or print its JSON schema",
        order=5,
        commands=(run_check, run_schema),
    ),
)
