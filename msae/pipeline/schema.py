"""The JSON schema of params.yaml, generated from the stage configs (msae.pipeline.params).

`msae params schema` prints it; a copy ships inside the package (msae/assets/params.schema.json)
so an installed msae, an editor or CI can validate a params file, and a test keeps it current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from msae.pipeline.params import params_model

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "params.schema.json"


def params_schema() -> dict[str, Any]:
    schema = params_model().model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "msae pipeline parameters (params.yaml)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def schema_text() -> str:
    return json.dumps(params_schema(), indent=2, sort_keys=True) + "\n"
