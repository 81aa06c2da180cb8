"""Build a stage's argparse options from its config spec, and the config back from parsed args.

Every option gets `default=SUPPRESS`: an option the user did not give is absent from the parsed
namespace, so the config model, not argparse, supplies defaults. Types map as: bool -> flag,
Literal -> choices, tuple[str, ...] -> a repeatable option, comma lists (IntList) -> one string.
"""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from msae.config.base import Cli, CommaSeparated, ConfigSpec, cli_facts

NONE_TYPE = type(None)


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without Optional/Annotated wrappers, whether None is allowed)."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not NONE_TYPE]
            optional = optional or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, optional
            annotation = members[0]
        else:
            return annotation, optional


def _argument(info: Any) -> dict[str, Any]:
    """argparse keyword arguments for one field (type, choices, action)."""
    kind, _ = _strip(info.annotation)
    origin = get_origin(kind)
    if kind is bool:
        return {"action": "store_true"}
    if origin is Literal:  # the config checks the value, so the message names the option like any other
        choices = get_args(kind)
        return {"type": type(choices[0]), "metavar": "{" + ",".join(map(str, choices)) + "}"}
    comma = _has_marker(info.annotation, CommaSeparated) or any(isinstance(m, CommaSeparated) for m in info.metadata)
    if origin is tuple and not comma:
        return {"action": "append", "type": _scalar_type(get_args(kind)[0])}
    if kind in (int, float):
        return {"type": kind}
    return {"type": str}


def _has_marker(annotation: Any, marker: type) -> bool:
    """Whether `marker` appears in the Annotated metadata anywhere inside `annotation`."""
    if get_origin(annotation) is Annotated:
        args = get_args(annotation)
        return any(isinstance(m, marker) for m in args[1:]) or _has_marker(args[0], marker)
    return any(_has_marker(a, marker) for a in get_args(annotation))


def _scalar_type(annotation: Any) -> type:
    kind, _ = _strip(annotation)
    return kind if kind in (int, float) else str


def _default_text(values: list[tuple[str, Any]]) -> str:
    shown = [(tag, default) for tag, default in values if default is not PydanticUndefined and default is not None]
    if not shown or all(d in ((), False, "") for _, d in shown):
        return ""
    if len({repr(d) for _, d in shown}) == 1:
        return f"default: {_format(shown[0][1])}"
    return "default: " + ", ".join(f"{_format(d)} ({tag})" for tag, d in shown)


def _format(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def add_options(parser: argparse.ArgumentParser, spec: ConfigSpec, order: list[str] | None = None) -> None:
    """Add one argparse option per field of the spec (fields shared by union members once)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    tags = spec.tags or ("",) * len(spec.models)
    tag_of: dict[type[BaseModel], str] = dict(zip(spec.models, tags, strict=True))
    for key, entries in spec.fields().items():
        model, info = entries[0]
        facts: Cli = cli_facts(info)
        target: Any = parser
        if facts.group:
            target = groups.setdefault(facts.group, parser.add_argument_group(facts.group))
        kwargs = _argument(info)
        if spec.discriminator and key == spec.discriminator:
            kwargs = {"type": str, "metavar": "{" + ",".join(tags) + "}"}
        used_by = [tag_of[m] for m, _ in entries]
        only = (
            f"{', '.join(used_by)}: "
            if spec.discriminator and key != spec.discriminator and len(used_by) < len(tags)
            else ""
        )
        default = _default_text([(tag_of[m], i.default) for m, i in entries])
        text = " ".join(part for part in (only + (info.description or ""), f"({default})" if default else "") if part)
        kwargs["help"] = text.replace("%", "%%")
        if facts.metavar:
            kwargs["metavar"] = facts.metavar
        elif "metavar" not in kwargs and kwargs.get("action") != "store_true":
            kwargs["metavar"] = key.upper().replace("-", "_")
        required = all(i.is_required() for _, i in entries)
        if facts.positional:
            many = kwargs.pop("action", None) == "append"
            kwargs["nargs"] = ("+" if required else "*") if many else (None if required else "?")
            if kwargs["nargs"] is None:
                kwargs.pop("nargs")
            kwargs["default"] = argparse.SUPPRESS
            target.add_argument(_dest(key), **kwargs)
            continue
        target.add_argument(f"--{key}", dest=_dest(key), default=argparse.SUPPRESS, required=required, **kwargs)


def _dest(key: str) -> str:
    """The argparse destination of an option (the parser's own entries start with an underscore)."""
    return key.replace("-", "_")


def values_from_args(args: argparse.Namespace, spec: ConfigSpec) -> dict[str, Any]:
    """The option values the user gave (absent options stay absent: the model has the default)."""
    given = vars(args)
    return {key: given[_dest(key)] for key in spec.fields() if _dest(key) in given}


def config_from_args(args: argparse.Namespace, spec: ConfigSpec) -> BaseModel:
    """The stage config of a parsed command line (ConfigError names the bad `--option`)."""
    return spec.build(values_from_args(args, spec))
