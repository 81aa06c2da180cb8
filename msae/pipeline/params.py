"""params.yaml: its model (derived from the stage table and the stage configs), its checks, and the
rendering of option sections as command lines.

Both tools read params.yaml directly, so a mistake there would otherwise surface minutes later as
a failing job (or not at all). `validate_params` checks it in two passes and names the bad key
(`runs.topk_k8.k`): the file's model (types, ranges, choices, unknown keys, the values a run must
state), then every job's config is built exactly as its command will build it (cross-key rules
such as k <= n, and option values that must name a store the pipeline makes). The Snakefile calls
it when parsed; `msae params check` is the first DVC stage.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, create_model
from pydantic_core import PydanticUndefined

from msae import layout
from msae.config.base import (
    SHELL_WORD,
    ConfigError,
    ConfigSpec,
    PlainConfig,
    StageConfig,
    cli_facts,
    describe_error,
    opt,
    tuple_of,
)
from msae.config.embed import ImageSource
from msae.errors import MsaeError
from msae.pipeline.stages import STAGES, Stage, option_sections
from msae.sae import variants

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MAX_ERRORS = 10
NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SPLIT = r"^[A-Za-z0-9_]+$"
Name = Annotated[str, Field(pattern=NAME)]
SplitName = Annotated[str, Field(pattern=SPLIT)]


class DataParams(PlainConfig):
    """The image source and the embedding stores made from it (the pipeline's shape)."""

    name: str = opt(help="dataset name: results/embeddings/<name>/<split>_<modality>.parquet", pattern=NAME)
    source: ImageSource = opt(help="`msae embed --source` of the images")
    root: str = opt(help="`msae embed --root` of the images", min_length=1, pattern=SHELL_WORD)
    images: tuple_of(SplitName) = opt(help="splits whose images are embedded", min_length=1)  # type: ignore[valid-type]
    captions: tuple_of(SplitName) = opt(  # type: ignore[valid-type]
        (), "splits whose captions are embedded (text-trained runs, image->text retrieval, language metrics)"
    )
    both: tuple_of(SplitName) = opt(  # type: ignore[valid-type]
        (),
        "splits whose image and caption stores are mixed into one (results/mixed/<name>/<split>_both.parquet, "
        "`msae mix`) "
        "for runs trained on both modalities; each must be in images and in captions",
    )
    language: tuple_of(SplitName) = opt(  # type: ignore[valid-type]
        (),
        "caption splits every run is also evaluated on (language metrics, the paper's Table 2; "
        "`evaluate_text:` options); each must be in captions",
    )


class StabilityParams(PlainConfig):
    """Seed stability: which runs are trained again at which extra seeds (msae reseed), and the
    cosine above which `msae stability` counts two matched atoms as shared."""

    runs: tuple_of(Name) = opt((), "runs trained again at each of `seeds` (only the seed changes)")  # type: ignore[valid-type]
    seeds: tuple_of(Annotated[int, Field(ge=0)]) = opt((), "the extra seeds (besides each run's own)")  # type: ignore[valid-type]
    threshold: float = opt(0.7, "`msae stability --threshold`: shared above this cosine", ge=-1, le=1)


class ShardParams(PlainConfig):
    shards: tuple_of(Annotated[str, Field(pattern=r"^[0-9]+/[1-9][0-9]*$")]) = opt(  # type: ignore[valid-type]
        ("0/1",), "embed each image split in these shards i/n (one job each), then gather", min_length=1
    )


# Sections of params.yaml that are not option sections: the shape of the pipeline.
SHAPE: dict[str, type[PlainConfig]] = {"data": DataParams, "embed": ShardParams, "stability": StabilityParams}


def _section_member(model: type[StageConfig], keys: set[str], discriminator: str | None) -> type[PlainConfig]:
    """`model` restricted to the section's keys; pinned options become required."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in keys and name != discriminator:
            continue
        new = copy.copy(info)
        if cli_facts(info).pinned:
            new.default = PydanticUndefined
        fields[name] = (info.annotation, new)
    return create_model(f"{model.__name__}Section", __base__=PlainConfig, __module__=__name__, **fields)


@cache
def section_type(path: str) -> Any:
    """The type of one option section (a model, or a union of models for the run variants)."""
    section = next(s for stage in STAGES for s in stage.sections if s.path == path)
    spec: ConfigSpec = section.spec()
    keys = set(section.keys())
    members = tuple(_section_member(m, keys, spec.discriminator) for m in spec.models)
    if spec.discriminator is None:
        return members[0]
    return Annotated[Union[members], Field(discriminator=spec.discriminator)]  # type: ignore[valid-type]  # noqa: UP007


def _insert(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    key = "{}" if head.startswith("{") else head
    if not rest:
        tree[key] = value
        return
    _insert(tree.setdefault(key, {}), rest, value)


def _build_tree(name: str, tree: dict[str, Any]) -> Any:
    """A pydantic type for a nested tree of sections (a `{}` level is a mapping by name)."""
    if "{}" in tree:
        inner = tree["{}"]
        value: Any = inner if not isinstance(inner, dict) else _build_tree(name, inner)
        return dict[Name, value]  # type: ignore[valid-type]  # a type built at runtime
    fields: dict[str, Any] = {}
    for key, value in tree.items():
        kind = _build_tree(f"{name}_{key}", value) if isinstance(value, dict) else value
        fields[key.replace("-", "_")] = (kind, Field(alias=key))
    base = SHAPE.get(name.split("_", 1)[-1], PlainConfig) if name.startswith("Params_") else PlainConfig
    return create_model(name, __base__=base, __module__=__name__, **fields)  # type: ignore[call-overload]


@cache
def params_model() -> type[PlainConfig]:
    """The model of a whole params.yaml: the shape sections plus every option section."""
    tree: dict[str, Any] = {}
    for section in option_sections():
        _insert(tree, section.path.split("."), section_type(section.path))
    fields: dict[str, Any] = {}
    for key, sub in tree.items():
        kind = _build_tree(f"Params_{key}", sub) if isinstance(sub, dict) else sub
        fields[key] = (kind, Field(alias=key))
    for key, model in SHAPE.items():
        if key not in fields:
            fields[key] = (model, Field(alias=key))
    model = create_model("Params", __base__=PlainConfig, __module__=__name__, **fields)
    model.model_rebuild()
    return model


# ----------------------------------------------------------------------------------- checks
def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate a params file; raise MsaeError naming the file and the bad key."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MsaeError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise MsaeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise MsaeError(f"{path}: not valid YAML ({exc})") from exc
    return validate_params(params, source=str(path))


def validate_params(params: Any, source: str = "params.yaml") -> dict[str, Any]:
    """Check params (both passes); return them unchanged. All problems found are listed (up to
    MAX_ERRORS), each as `<key.path>: <what is wrong>`."""
    if not isinstance(params, dict):
        raise MsaeError(f"{source}: expected a mapping of sections at the top level, found {type(params).__name__}")
    problems = _model_problems(params)
    if not problems:
        problems = list(_job_problems(params))
    if problems:
        shown = problems[:MAX_ERRORS]
        more = f"\n  ... and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
        raise MsaeError(f"{source}: invalid parameters\n  " + "\n  ".join(shown) + more)
    return params


def _model_problems(params: dict[str, Any]) -> list[str]:
    from pydantic import ValidationError

    try:
        params_model().model_validate(params)
    except ValidationError as exc:
        out = []
        for error in exc.errors():
            if error["loc"] and error["loc"][-1] == "[key]":
                where = ".".join(map(str, error["loc"][:-1]))
                out.append(
                    f"{where}: the name must be a valid identifier (letters, digits, underscores; "
                    "not starting with a digit), e.g. topk_k8"
                )
                continue
            key, message = describe_error(error, tuple(variants.trainable()))
            out.append(f"{key or '(top level)'}: {message}")
        return out
    return []


def lookup(params: Mapping[str, Any], path: str) -> Any:
    node: Any = params
    for part in path.split("."):
        node = node[part]
    return node


def _values(stage: Stage, params: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """Every assignment of the stage's expansion variables (one per job)."""
    expansion = stage.expansion
    if expansion is None:
        yield {}
        return
    pools = [list(lookup(params, c)) for c in expansion.collections]
    if len(pools) == 1:
        yield from ({expansion.variables[0]: v} for v in pools[0])
        return
    for a in pools[0]:
        for b in pools[1]:
            yield dict(zip(expansion.variables, (a, b), strict=True))


def wired(template: str, params: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    """A wired option's value: the params or expansion value itself when the template is one
    `{name}` (so numbers stay numbers), else the filled-in text."""
    from msae.pipeline.render import TOKEN

    whole = TOKEN.fullmatch(template)
    if whole is not None and "{" not in whole.group(1):
        name = whole.group(1)
        return values[name] if name in values else lookup(params, name)
    return fill(template, params, values)


def fill(template: str, params: Mapping[str, Any], values: Mapping[str, str]) -> str:
    """A stage template with its variables and params paths replaced by values."""
    from msae.pipeline.render import TOKEN

    def sub(match: Any) -> str:
        name = match.group(1)
        if name in values:
            return str(values[name])
        return str(lookup(params, fill(name, params, values) if "{" in name else name))

    return TOKEN.sub(sub, template)


def outputs(params: Mapping[str, Any]) -> set[str]:
    """Every file or folder the pipeline writes (all jobs expanded)."""
    made: set[str] = set()
    for stage in STAGES:
        for values in _values(stage, params):
            made |= {fill(a.template, params, values) for a in stage.args if a.role in ("out", "dir", "metrics")}
            made |= {fill(d.template, params, values) for d in stage.deps if d.role in ("out", "dir", "metrics")}
    return made


def _job_problems(params: dict[str, Any]) -> Iterator[str]:
    data = params["data"]
    for split in data.get("language", ()):
        if split not in data.get("captions", ()):
            yield f"data.language: split {split!r} has no caption store (add it to data.captions: {data.get('captions', [])})"
    for split in data.get("both", ()):
        lacking = [key for key in ("images", "captions") if split not in data.get(key, ())]
        if lacking:
            yield f"data.both: split {split!r} is not in data.{' and data.'.join(lacking)} (both stores are mixed)"
    yield from _stability_problems(params)
    yield from _shard_problems(params["embed"]["shards"])
    made = outputs(params)
    for stage in STAGES:
        for values in _values(stage, params):
            yield from _stage_problems(stage, params, values, made)


def _stage_problems(
    stage: Stage, params: Mapping[str, Any], values: Mapping[str, str], made: set[str]
) -> Iterator[str]:
    """Build the job's config as its command line would; name the params key of each problem."""
    spec = stage.spec()
    options: dict[str, Any] = {a.key: wired(a.template, params, values) for a in stage.args}
    for arg in stage.args:
        if arg.positional:  # a positional option takes a list of values
            options[arg.key] = [options[arg.key]]
    owner: dict[str, str] = {}
    paths = [fill(s.path, params, values) if "{" in s.path else s.path for s in stage.sections]
    for path in paths:
        for key, value in lookup(params, path).items():
            options[key], owner[key] = value, path
            if isinstance(value, str) and value.startswith(f"{layout.RESULTS}/") and value not in made:
                yield (
                    f"{path}.{key}: {value!r} is not a file the pipeline makes (one of: "
                    f"{', '.join(sorted(m for m in made if m.endswith('.parquet')))})"
                )
    try:
        config = spec.build(options)
        if stage.check is not None:
            stage.check(config, params)
    except ConfigError as exc:
        for key, message in exc.problems:
            where = owner.get(key, paths[0] if paths else stage.name)  # a missing key: the job's own section
            yield f"{where}.{key}: {message}"


def _stability_problems(params: Mapping[str, Any]) -> Iterator[str]:
    """Seeded runs must be runs, and an extra seed must not repeat the run's own."""
    stability, runs = params["stability"], params["runs"]
    for run in stability["runs"]:
        if run not in runs:
            yield f"stability.runs: {run!r} is not a run (one of: {', '.join(runs)})"
        elif runs[run].get("seed") in stability["seeds"]:
            yield f"stability.seeds: {runs[run]['seed']} is the own seed of runs.{run} (list the extra seeds)"
    if len(set(stability["seeds"])) != len(stability["seeds"]):
        yield f"stability.seeds: {stability['seeds']} lists a seed twice"


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


# ----------------------------------------------------------------------------------- helpers
def stores(params: Mapping[str, Any]) -> list[str]:
    """Every embedding store made from the data source: gathered images of each split in
    `data.images`, captions of each split in `data.captions`, one store per `data.prompts` entry."""
    data = params["data"]
    return (
        [layout.image_store(data["name"], split) for split in data["images"]]
        + [layout.text_store(data["name"], split) for split in data["captions"]]
        + [layout.prompt_store(data["name"], name) for name in data["prompts"]]
    )


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
