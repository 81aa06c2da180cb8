"""The vocabulary of the stage table (msae.pipeline.stages): how a stage is expanded, its wired
options and other files, its option sections and its Snakemake report entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from msae import layout
from msae.config.base import ConfigSpec

Role = Literal["in", "out", "dir", "value", "metrics"]


@dataclass(frozen=True)
class Expansion:
    """How a stage is expanded: one job per key of a params mapping (`runs`), per item of a params
    list (`data.images`), or per pair of two lists (a matrix)."""

    variables: tuple[str, ...]
    collections: tuple[str, ...]  # params paths, one per variable
    mapping: bool = False  # a dict (DVC: foreach key/item) rather than a list


@dataclass(frozen=True)
class Section:
    """A params.yaml section holding options of a command: `path` may contain the stage's
    expansion variable (`runs.{run}`). `include` lists the option keys it may hold (default:
    every option of `spec` not in `exclude`)."""

    path: str
    spec: Callable[[], ConfigSpec]
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def keys(self) -> list[str]:
        every = list(self.spec().fields())
        chosen = every if self.include is None else [k for k in every if k in self.include]
        return [k for k in chosen if k not in self.exclude]


@dataclass(frozen=True)
class Arg:
    """A wired option: `--key template`, or the bare value for a `positional` option. `role` says
    whether the value is a file the stage reads (in), writes (out, dir, metrics) or just a value;
    `glob` keeps a shell glob unquoted."""

    key: str
    template: str
    role: Role = "value"
    glob: bool = False
    positional: bool = False


@dataclass(frozen=True)
class Dep:
    """An input or output that is not on the command line. `each` expands the template over every
    value of a variable the stage itself is not expanded over (Snakemake lists them; DVC depends
    on `dvc`, the folder that holds them). `stores` stands for every embedding store of the data
    source (Snakemake lists them; DVC depends on their folder, the template)."""

    template: str
    name: str  # the Snakemake keyword of the input or output
    role: Role = "in"
    each: Expansion | None = None
    dvc: str | None = None
    stores: bool = False


@dataclass(frozen=True)
class Report:
    """Where a Snakemake `--report` shows an output (category, caption file, gallery pattern)."""

    category: str
    caption: str
    patterns: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    labels_function: str = ""  # a function of the Snakefile that labels each entry (e.g. by concept name)


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    comment: str
    spec: Callable[[], ConfigSpec]  # the command's config (the job's options are built with it)
    args: tuple[Arg, ...]
    sections: tuple[Section, ...] = ()
    expansion: Expansion | None = None
    deps: tuple[Dep, ...] = ()
    torch: bool = False  # needs the GPU (one GPU job at a time locally) and all its threads
    report: Report | None = None
    report_output: str = ""  # which output the report entry wraps
    check: Callable[[Any, Mapping[str, Any]], None] | None = None  # a rule that needs the whole params file

    @property
    def variables(self) -> tuple[str, ...]:
        return self.expansion.variables if self.expansion else ()

    def log(self) -> str:
        return layout.log_file(self.name, *(f"{{{v}}}" for v in self.variables))


def spec_of(model: type) -> Callable[[], ConfigSpec]:
    return lambda: ConfigSpec.of(model)
