"""Load and check params.yaml, the one parameter file of the Snakemake and DVC pipelines.

Both tools read params.yaml directly, so a mistake there would otherwise surface minutes later as
a failing job (or not at all). `validate_params` runs the JSON schema of
workflow/schemas/params.schema.yaml plus the checks a schema cannot express (k <= n, nesting
within n, run names usable as wildcards), and names the bad key (`runs.topk_a.k`) in the error.
The Snakefile calls it at parse time; `msae params check` is the first DVC stage.

Each option section (a run under `runs:`, `embed.options`, `evaluate`, ...) maps key -> value of
one `msae` command; `options` renders it exactly as DVC's `${section}` dict unpacking does (with
this repository's `parsing.list = append`), so the Snakemake rules and the DVC stages produce
byte-identical command lines.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import shlex
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from msae.errors import MsaeError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"
ASSETS = Path(__file__).resolve().parent / "assets"
MAX_ERRORS = 10
# Options whose value must be one of the embedding stores the pipeline makes (see `stores`).
STORE_OPTIONS = {
    ("evaluate",): ("embeddings", "probe-train", "text-embeddings", "class-embeddings"),
    ("concepts",): ("images", "captions"),
    ("probes", "similarity"): ("embeddings",),
    ("probes", "bias"): ("train", "test"),
}


@lru_cache(maxsize=1)
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The JSON schema of params.yaml (kept in the workflow folder, where Snakemake users look)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MsaeError(f"{path}: cannot read the params schema ({exc})") from exc


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate a params file; raise MsaeError naming the file and the bad key."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MsaeError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise MsaeError(f"{path}: not valid YAML ({exc})") from exc
    return validate_params(params, source=str(path))


def validate_params(params: Any, source: str = "params.yaml") -> dict[str, Any]:
    """Check params against the schema and the cross-key rules; return them unchanged.

    All problems found are listed (up to MAX_ERRORS), each as `<key.path>: <what is wrong>`.
    """
    if not isinstance(params, dict):
        raise MsaeError(f"{source}: expected a mapping of sections at the top level, found {type(params).__name__}")
    problems = list(_name_problems(params))
    if not problems:
        problems = list(_schema_problems(params))
    if not problems:
        problems = list(_semantic_problems(params))
    if problems:
        shown = problems[:MAX_ERRORS]
        more = f"\n  ... and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
        raise MsaeError(f"{source}: invalid parameters\n  " + "\n  ".join(shown) + more)
    return params


def _key(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _name_problems(params: Mapping[str, Any]) -> Iterator[str]:
    """Names of runs and worlds become Snakemake wildcards, DVC stage names and directories."""
    for section in ("runs", "worlds"):
        block = params.get(section)
        if not isinstance(block, Mapping):
            continue
        for name in block:
            if not (isinstance(name, str) and name.isascii() and name.isidentifier() and not keyword.iskeyword(name)):
                yield (
                    f"{section}.{name}: the name must be a valid identifier (letters, digits, underscores; "
                    "not starting with a digit), e.g. topk_k8"
                )


def _schema_problems(params: Mapping[str, Any]) -> Iterator[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for error in errors:
        yield from _describe(error)


def _describe(error: Any) -> Iterator[str]:
    """Turn one jsonschema error into messages that name the exact key."""
    path = list(error.absolute_path)
    if error.validator == "required":
        for name in error.validator_value:
            if isinstance(error.instance, Mapping) and name not in error.instance:
                yield f"{_key(path + [name])}: missing (required{_required_reason(error)})"
    elif error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - allowed):
            yield f"{_key(path + [name])}: unknown key (allowed: {', '.join(sorted(allowed))})"
    elif error.validator == "oneOf" and all(set(sub) == {"required"} for sub in error.validator_value):
        names = [name for sub in error.validator_value for name in sub["required"]]
        yield f"{_key(path)}: give exactly one of {', '.join(names)}{_required_reason(error)}"
    elif error.validator == "enum":
        yield f"{_key(path)}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    else:
        yield f"{_key(path)}: {error.message}"


def _required_reason(error: Any) -> str:
    """Variant-specific requirements carry a `description` in the schema's then-branch."""
    reason = error.schema.get("description")
    return f" {reason}" if reason else ""


def embeddings_dir(params: Mapping[str, Any]) -> str:
    """Folder of the data source's embedding stores."""
    return f"results/embeddings/{params['data']['name']}"


def stores(params: Mapping[str, Any]) -> list[str]:
    """Every embedding store made from the data source: gathered images of each split in
    `data.images`, captions of each split in `data.captions`, one store per `data.prompts` entry."""
    data, folder = params["data"], embeddings_dir(params)
    return (
        [f"{folder}/{split}_image.parquet" for split in data["images"]]
        + [f"{folder}/{split}_text.parquet" for split in data["captions"]]
        + [f"{folder}/prompts_{name}.parquet" for name in data["prompts"]]
    )


def _semantic_problems(params: Mapping[str, Any]) -> Iterator[str]:
    yield from _store_problems(params)
    yield from _shard_problems(params["embed"]["shards"])
    yield from _run_size_problems(params)


def _store_problems(params: Mapping[str, Any]) -> Iterator[str]:
    data = params["data"]
    if data["train"] not in data["images"]:
        yield f"data.train: split {data['train']!r} is not embedded (add it to data.images: {data['images']})"
    made = stores(params)
    for section_path, keys in STORE_OPTIONS.items():
        section: Any = params
        for part in section_path:
            section = section[part]
        for key in keys:
            if key in section and section[key] not in made:
                yield (
                    f"{_key([*section_path, key])}: {section[key]!r} is not an embedding store the pipeline makes "
                    f"(one of: {', '.join(made)})"
                )


def _shard_problems(shards: list[str]) -> Iterator[str]:
    pairs = [tuple(int(x) for x in shard.split("/")) for shard in shards]
    counts = {n for _, n in pairs}
    if len(counts) != 1:
        yield f"embed.shards: all shards must be of one count n (found {', '.join(map(str, sorted(counts)))})"
        return
    n = counts.pop()
    if sorted(i for i, _ in pairs) != list(range(n)):
        expected = ", ".join(f"{i}/{n}" for i in range(n))
        yield f"embed.shards: list every shard of {n} exactly once: [{expected}]"


def _run_size_problems(params: Mapping[str, Any]) -> Iterator[str]:
    dim = embedding_dim(params["backbone"]["model"])
    for name, run in params["runs"].items():
        if dim is None:
            continue  # unknown architecture (a local checkpoint): `msae train` checks against the data
        n = n_latents(run["expansion"], dim)
        where = f"runs.{name}"
        if "k" in run and run["k"] > n:
            yield f"{where}.k: {run['k']} is more than the run's number of latents n = int(expansion x d) = {n}"
        if "nesting-start" in run and run["nesting-start"] > n:
            yield f"{where}.nesting-start: {run['nesting-start']} is more than the run's number of latents n = {n}"
        if "auxk-k" in run and run["auxk-k"] > n:
            yield f"{where}.auxk-k: {run['auxk-k']} is more than the run's number of latents n = {n}"
        if "nesting" in run:
            levels = [int(x) for x in run["nesting"].split(",")]
            if any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1 or levels[-1] > n:
                yield f"{where}.nesting: {run['nesting']}: levels must increase strictly within 1..n = {n}"


def n_latents(expansion: float, dim: int) -> int:
    """Dictionary size of a run, computed as `msae train` does (int(expansion x d))."""
    return int(expansion * dim)


def embedding_dim(model: str) -> int | None:
    """Embedding width of an open_clip architecture, read from its model config without importing
    torch (the Snakefile calls this at parse time); None when the name is not a known config."""
    candidates = [ASSETS / f"{model}.json"]
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "model_configs" / f"{model}.json" for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return int(json.loads(path.read_text(encoding="utf-8"))["embed_dim"])
    return None


def options(section: Mapping[str, Any]) -> str:
    """Render an option section as command-line options, exactly like DVC's `${section}` unpacking.

    `key: value` -> `--key value`; true -> `--key`, false -> nothing; a list -> `--key a --key b`
    (repeated options, DVC's `parsing.list: append`, set in .dvc/config); strings are shell-quoted.
    Keeping this identical to DVC is what the DAG-equivalence test checks.
    """
    parts: list[str] = []
    for key, value in section.items():
        if isinstance(value, bool):
            if value:
                parts.append(f"--{key}")
        elif isinstance(value, str):
            parts.append(f"--{key} {shlex.quote(value)}")
        elif isinstance(value, (list, tuple)):
            parts.extend(f"--{key} {shlex.quote(v) if isinstance(v, str) else v}" for v in value)
        elif isinstance(value, Mapping):
            raise MsaeError(f"option {key!r}: nested mappings cannot be rendered as command-line options")
        else:
            parts.append(f"--{key} {value}")
    return " ".join(parts)
