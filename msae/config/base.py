"""The one place an option is declared: a field of a stage's frozen, typed config.

A field carries its help text (`description`), choices (a `Literal` type), range (`ge`, `gt`, ...)
and default; `Cli` metadata adds what only the command line needs (group, metavar, positional) and
whether a params file must state the value (`pinned`). The `msae` parser, the params JSON schema and
`msae params check` are all derived from these models, so a rule is written once.

Every option key is the command-line spelling without dashes (`batch-size`), which is also the
params.yaml key; library code may use the Python field names (`batch_size`).

Problems found while building a config are raised as `ConfigError`, a list of (key, message) that
is worded for where the values came from: `--k` on the command line, `runs.topk_k8.k` in
params.yaml, `config.json: k` in a run directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from msae.errors import MsaeError

# A value the pipeline pastes into a quoted shell word (`--root '${data.root}'` in dvc.yaml): no
# quotes, no $, no backquote, no backslash, no control characters.
SHELL_WORD = r"^[^'\"`$\\\x00-\x1f\x7f]+$"


def option_key(name: str) -> str:
    """The command-line / params.yaml spelling of a field name: `batch_size` -> `batch-size`."""
    return name.replace("_", "-")


class PlainConfig(BaseModel):
    """Frozen, unknown keys refused, values type-checked strictly; errors are pydantic's (for models
    nested in others, such as the sections of the params file)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=option_key,
        validate_by_name=True,
        validate_by_alias=True,
        arbitrary_types_allowed=False,
    )


class StageConfig(PlainConfig):
    """Base of every stage config. Building one from bad values raises ConfigError (an MsaeError
    naming each key), whether through the command line, `ConfigSpec.build` or the constructor."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            variant = values.get("variant")  # an SAE run: say which variant an unknown option is foreign to
            problems = [
                (
                    option_key(key),
                    f"{message} for variant {variant}" if variant and message == "unknown option" else message,
                )
                for key, message in describe_validation(exc).problems
            ]
            raise ConfigError(problems) from None

    def option_values(self) -> dict[str, Any]:
        """The config as option key -> value (what a params section or a command line holds)."""
        return self.model_dump(by_alias=True, mode="json")


@dataclass(frozen=True)
class Cli:
    """Command-line and params-file facts of one option (kept out of the JSON schema)."""

    group: str = ""  # help section of the option
    metavar: str | None = None
    positional: bool = False
    pinned: bool = False  # a params file must state this value (it is the record of the run)


def opt(
    default: Any = ...,
    help: str = "",
    *,
    group: str = "",
    metavar: str | None = None,
    positional: bool = False,
    pinned: bool = False,
    **constraints: Any,
) -> Any:
    """Declare an option: default (omit for required), help text and pydantic constraints
    (ge, gt, le, lt, pattern, min_length, ...; `alias` spells the key when it is not the field
    name with dashes, e.g. `--C`)."""
    info = Field(default, description=help, **constraints)
    info.metadata.append(Cli(group=group, metavar=metavar, positional=positional, pinned=pinned))
    return info


def cli_facts(info: Any) -> Cli:
    """The Cli metadata of a pydantic FieldInfo (defaults when the field has none)."""
    return next((m for m in info.metadata if isinstance(m, Cli)), Cli())


def _to_path(value: Any) -> Any:
    return Path(value) if isinstance(value, str) else value


def _to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _split_ints(value: Any) -> Any:
    """'8,16,32' (command line, params) -> (8, 16, 32); sequences pass through."""
    if isinstance(value, str):
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError as exc:
            raise ValueError(f"expected comma-separated integers such as 8,16,32, got {value!r}") from exc
    return tuple(value) if isinstance(value, list) else value


# Option types shared by every stage (declared once).
PathOption = Annotated[Path, BeforeValidator(_to_path), PlainSerializer(str, return_type=str)]


@dataclass(frozen=True)
class CommaSeparated:
    """Marks a list option written as one comma-separated value (`--nesting 8,16,32`)."""


IntList = Annotated[
    tuple[int, ...],
    CommaSeparated(),
    BeforeValidator(_split_ints),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}),
]


def tuple_of(inner: Any) -> Any:
    """A tuple option that also accepts a list (YAML and JSON have no tuples)."""
    return Annotated[tuple[inner, ...], BeforeValidator(_to_tuple)]


StrList = Annotated[tuple[str, ...], BeforeValidator(_to_tuple)]
PathList = Annotated[tuple[PathOption, ...], BeforeValidator(_to_tuple)]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"


def device_option(default: str = "auto") -> Any:
    """The torch device option every torch stage has."""
    return opt(
        default,
        "torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps",
        pattern=DEVICE_PATTERN,
        group="hardware",
    )


class ConfigError(MsaeError):
    """Problems with option values, each tied to its key; rendered for where the values came from:
    `where` is "cli" (`--k`), a params key prefix such as "runs.topk_k8" (`runs.topk_k8.k`) or
    "file" (`k`, after the file named by `source`)."""

    def __init__(self, problems: list[tuple[str, str]], where: str = "cli", source: str = "") -> None:
        self.problems, self.where, self.source = list(problems), where, source
        super().__init__(self.render())

    def located(self, where: str, source: str = "") -> ConfigError:
        """The same problems, worded for another origin (a params key prefix or a file)."""
        return ConfigError(list(self.problems), where=where, source=source or self.source)

    def key_name(self, key: str) -> str:
        if self.where == "cli":
            return f"--{key}" if key else "options"
        if self.where == "file":  # a file (config.json) spells keys as field names: n_latents
            return key.replace("-", "_") or "(top level)"
        return ".".join(part for part in (self.where, key) if part) or "(top level)"

    def render(self) -> str:
        lines = [f"{self.key_name(key)}: {message}" for key, message in self.problems]
        head = f"{self.source}: " if self.source else ""
        if len(lines) == 1:
            return head + lines[0]
        return head + "invalid options\n  " + "\n  ".join(lines)

    def __str__(self) -> str:
        return self.render()


def option_error(key: str, message: str) -> ConfigError:
    """One bad option (raised by a rule that lives outside the field declarations, e.g. k <= n)."""
    return ConfigError([(key, message)])


def describe_error(error: Mapping[str, Any], tags: Sequence[str], discriminator: str = "variant") -> tuple[str, str]:
    """(key, message) of one pydantic error; the tag a discriminated union puts in the location
    (e.g. 'topk' in runs.topk_k8.topk.k) is dropped."""
    loc = [str(part) for part in error["loc"]]
    tag = next((part for part in loc if part in tags), "")
    if tag:
        loc.remove(tag)
    key = ".".join(loc)
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        message = f"unknown option{f' for variant {tag}' if tag else ''}"
    elif kind == "missing":
        message = "missing (required)"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ".".join([*loc, discriminator])
        message = f"choose one of {', '.join(tags)}" if kind == "union_tag_invalid" else "missing (required)"
    elif kind == "literal_error":
        message = f"{error.get('input')!r}: {message.lower()}"
    else:
        message = f"{error.get('input')!r}: {message[:1].lower()}{message[1:]}" if "input" in error else message
    return key, message


def describe_validation(exc: ValidationError, tags: Sequence[str] = ()) -> ConfigError:
    """A pydantic error as a ConfigError naming each key."""
    return ConfigError([describe_error(error, tags) for error in exc.errors()])


def build(
    adapter: TypeAdapter[Any] | type[BaseModel],
    values: Mapping[str, Any],
    tags: Sequence[str] = (),
) -> Any:
    """Validate `values` (option key -> value) into a config; raise ConfigError naming each key."""
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_python(dict(values))
        return adapter.model_validate(dict(values))
    except ValidationError as exc:
        problems = describe_validation(exc, tags).problems  # keys given by field name read as options
        raise ConfigError([(option_key(key), message) for key, message in problems]) from None


def fields_of(models: Iterable[type[BaseModel]]) -> dict[str, list[tuple[type[BaseModel], Any]]]:
    """Option key -> [(model, FieldInfo)] over several models (the members of a union)."""
    models = list(models)
    merged: dict[str, list[tuple[type[BaseModel], Any]]] = {}
    for model in models:
        for name, info in model.model_fields.items():
            merged.setdefault(info.alias or option_key(name), []).append((model, info))
    shared = [k for k, entries in merged.items() if len(entries) == len(models)]  # options of every member first
    return {k: merged[k] for k in shared + [k for k in merged if k not in shared]}


@dataclass(frozen=True)
class ConfigSpec:
    """The config of one stage: a single model, or a union of models told apart by one key (the
    SAE variant). Parsers, schemas and params checks take a spec, never a model directly."""

    models: tuple[type[StageConfig], ...]
    discriminator: str | None = None

    @classmethod
    def of(cls, model: type[StageConfig]) -> ConfigSpec:
        return cls((model,))

    @property
    def tags(self) -> tuple[str, ...]:
        """The discriminator's value of each member, in order (empty for a single model)."""
        if self.discriminator is None:
            return ()
        return tuple(get_args(m.model_fields[self.discriminator].annotation)[0] for m in self.models)

    def adapter(self) -> TypeAdapter[Any] | type[StageConfig]:
        if self.discriminator is None:
            return self.models[0]
        union: Any = Union[self.models]  # noqa: UP007  # a runtime union of the member models
        return TypeAdapter(Annotated[union, Field(discriminator=self.discriminator)])

    def build(self, values: Mapping[str, Any]) -> Any:
        """A config from option key -> value; ConfigError names each bad key."""
        return build(self.adapter(), values, self.tags)

    def fields(self) -> dict[str, list[tuple[type[BaseModel], Any]]]:
        return fields_of(self.models)
