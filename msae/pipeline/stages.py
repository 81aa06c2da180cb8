"""The pipeline, declared once: one table of stages from which the Snakemake rules and dvc.yaml
are written (`msae pipeline write`) and the params file is checked.

A stage runs one `msae` command. Its command line is made of
- wired options: values the pipeline sets (paths from msae.layout, params.yaml values such as
  `data.root`), each an input, an output or a plain value;
- option sections: params.yaml sections whose keys are options of the command (`runs.<run>`,
  `evaluate`, `backbone`, ...), rendered as `--key value`.

Templates use `{name}` for an expansion variable (run, world, split, shard, prompt) and
`{data.name}`-style dotted names for params.yaml values; `msae.pipeline.render` turns them into
Snakemake wildcards and Python expressions, or DVC `${...}` interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from msae import layout
from msae.config.base import ConfigSpec
from msae.config.concepts import ConceptsConfig
from msae.config.embed import BackboneOptions, EmbedConfig, GatherConfig, VocabConfig
from msae.config.evaluate import EvaluateConfig
from msae.config.probes import BiasConfig, SimilarityConfig
from msae.config.report import ReportConfig
from msae.config.train import train_spec
from msae.config.world import RenderConfig

Role = Literal["in", "out", "dir", "value", "metrics"]


@dataclass(frozen=True)
class Expansion:
    """How a stage is expanded: one job per key of a params mapping (`runs`), per item of a params
    list (`data.images`), or per pair of two lists (a matrix)."""

    variables: tuple[str, ...]
    collections: tuple[str, ...]  # params paths, one per variable
    mapping: bool = False  # a dict (DVC: foreach key/item) rather than a list


RUNS = Expansion(("run",), ("runs",), mapping=True)
WORLDS = Expansion(("world",), ("worlds",), mapping=True)
PROMPTS = Expansion(("prompt",), ("data.prompts",), mapping=True)
IMAGE_SPLITS = Expansion(("split",), ("data.images",))
CAPTION_SPLITS = Expansion(("split",), ("data.captions",))
SHARDS = Expansion(("split", "shard"), ("data.images", "embed.shards"))


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


def _of(model: type) -> Callable[[], ConfigSpec]:
    return lambda: ConfigSpec.of(model)


def _run_fits_backbone(config: Any, params: Mapping[str, Any]) -> None:
    """k, nesting and AuxK sizes must fit n = int(expansion x d), d from the backbone's config."""
    from msae.pipeline.params import embedding_dim

    dim = embedding_dim(params["backbone"]["model"])
    if dim is not None:  # unknown architecture (a local checkpoint): `msae train` checks the data
        config.architecture(dim)


DATA = "{data.name}"
STORES = Dep(layout.embeddings_dir(DATA), "stores", stores=True)
EMBED_WIRED = ("source", "root", "split", "modality", "template", "dataset", "shard", "out", "model", "pretrained")
BACKBONE = Section("backbone", _of(BackboneOptions))
EMBED_OPTIONS = Section("embed.options", _of(EmbedConfig), exclude=EMBED_WIRED)
PROMPT = Section("data.prompts.{prompt}", _of(EmbedConfig), include=("root", "template"))
SAE = Arg("sae", layout.sae_dir("{run}"), "in")

STAGES: tuple[Stage, ...] = (
    Stage(
        "world",
        "world render",
        "The offline world: `msae world render` per entry of `worlds:`.",
        spec=_of(RenderConfig),
        args=(Arg("out", layout.world_dir("{world}"), "dir"),),
        sections=(Section("worlds.{world}", _of(RenderConfig), exclude=("out",)),),
        expansion=WORLDS,
    ),
    Stage(
        "embed_images",
        "embed",
        "Image stores, one job per shard of each split in `data.images`.",
        spec=_of(EmbedConfig),
        args=(
            Arg("source", "{data.source}"),
            Arg("root", "{data.root}", "in"),
            Arg("split", "{split}"),
            Arg("dataset", DATA),
            Arg("shard", "{shard}"),
            Arg("out", layout.shard_store(DATA, "{split}", "{shard}"), "out"),
        ),
        sections=(BACKBONE, EMBED_OPTIONS),
        expansion=SHARDS,
        torch=True,
    ),
    Stage(
        "gather_images",
        "gather",
        "The shards of each image split, gathered into one store.",
        spec=_of(GatherConfig),
        args=(
            Arg("out", layout.image_store(DATA, "{split}"), "out"),
            Arg("shards", layout.shard_dir(DATA, "{split}") + "/*/*.parquet", glob=True, positional=True),
        ),
        expansion=IMAGE_SPLITS,
        deps=(
            Dep(
                layout.shard_store(DATA, "{split}", "{shard}"),
                "shards",
                each=Expansion(("shard",), ("embed.shards",)),
                dvc=layout.shard_dir(DATA, "{split}"),
            ),
        ),
    ),
    Stage(
        "embed_captions",
        "embed",
        "Caption stores of the splits in `data.captions` (same ids as the images).",
        spec=_of(EmbedConfig),
        args=(
            Arg("source", "{data.source}"),
            Arg("root", "{data.root}", "in"),
            Arg("split", "{split}"),
            Arg("modality", "text"),
            Arg("dataset", DATA),
            Arg("out", layout.text_store(DATA, "{split}"), "out"),
        ),
        sections=(BACKBONE, EMBED_OPTIONS),
        expansion=CAPTION_SPLITS,
        torch=True,
    ),
    Stage(
        "embed_prompts",
        "embed",
        "Class-prompt stores (zero-shot classifiers), one per `data.prompts` entry.",
        spec=_of(EmbedConfig),
        args=(Arg("source", "classes"), Arg("dataset", DATA), Arg("out", layout.prompt_store(DATA, "{prompt}"), "out")),
        sections=(PROMPT, BACKBONE, EMBED_OPTIONS),
        expansion=PROMPTS,
        torch=True,
        deps=(Dep("{data.prompts.{prompt}.root}", "classes"),),
    ),
    Stage(
        "vocab",
        "vocab",
        "The naming vocabulary.",
        spec=_of(VocabConfig),
        args=(Arg("out", layout.VOCAB_TERMS, "out"),),
        sections=(Section("vocab", _of(VocabConfig), exclude=("out",)),),
    ),
    Stage(
        "embed_vocab",
        "embed",
        "The vocabulary's text embeddings (no prompt template, as the paper).",
        spec=_of(EmbedConfig),
        args=(
            Arg("source", "terms"),
            Arg("root", layout.VOCAB_TERMS, "in"),
            Arg("dataset", "vocab"),
            Arg("out", layout.VOCAB_STORE, "out"),
        ),
        sections=(BACKBONE, EMBED_OPTIONS),
        torch=True,
    ),
    Stage(
        "train",
        "train",
        "One SAE per entry of `runs:`.",
        spec=train_spec,
        args=(
            Arg("embeddings", layout.image_store(DATA, "{data.train}"), "in"),
            Arg("out", layout.sae_dir("{run}"), "dir"),
        ),
        sections=(Section("runs.{run}", train_spec, exclude=("embeddings", "out")),),
        expansion=RUNS,
        torch=True,
        check=_run_fits_backbone,
    ),
    Stage(
        "evaluate",
        "evaluate",
        "Metrics of each run; the stores used are the `evaluate:` options.",
        spec=_of(EvaluateConfig),
        args=(SAE, Arg("out", layout.eval_dir("{run}"))),
        sections=(Section("evaluate", _of(EvaluateConfig), exclude=("sae", "out")),),
        expansion=RUNS,
        torch=True,
        deps=(
            STORES,
            Dep(layout.metrics_file("{run}"), "metrics", "metrics"),
            Dep(layout.progressive_file("{run}"), "progressive", "out"),
        ),
        report=Report("Metrics", "metrics.rst", labels=(("run", "{run}"), ("file", "metrics.json"))),
        report_output=layout.metrics_file("{run}"),
    ),
    Stage(
        "concepts",
        "concepts",
        "Named concepts of each run: names, valid latents, galleries.",
        spec=_of(ConceptsConfig),
        args=(SAE, Arg("vocab", layout.VOCAB_STORE, "in"), Arg("out", layout.concepts_dir("{run}"), "dir")),
        sections=(Section("concepts", _of(ConceptsConfig), exclude=("sae", "vocab", "out")),),
        expansion=RUNS,
        torch=True,
        deps=(STORES,),
        report=Report(
            "Concept galleries", "gallery.rst", patterns=("galleries/{name}.png",), labels_function="gallery_labels"
        ),
        report_output=layout.concepts_dir("{run}"),
    ),
    *(
        Stage(
            f"probe_{probe}",
            f"probe {probe}",
            f"The {probe} probe of each run.",
            spec=_of(spec),
            args=(
                SAE,
                Arg("concepts", layout.latents_file("{run}")),
                Arg("out", layout.probe_dir("{run}", probe), "dir"),
            ),
            sections=(Section(f"probes.{probe}", _of(spec), exclude=("sae", "concepts", "out")),),
            expansion=RUNS,
            torch=True,
            deps=(Dep(layout.concepts_dir("{run}"), "concepts"), STORES),
        )
        for probe, spec in (("similarity", SimilarityConfig), ("bias", BiasConfig))
    ),
    Stage(
        "report",
        "report",
        "The comparison of all runs (`msae report` reads every run folder under results/).",
        spec=_of(ReportConfig),
        args=(
            Arg("runs", layout.SAE_ROOT),
            Arg("eval", layout.EVAL_ROOT),
            Arg("concepts", layout.CONCEPTS_ROOT),
            Arg("probes", layout.PROBES_ROOT),
            Arg("images", "{concepts.images}", "in"),
            Arg("out", layout.REPORT_DIR, "dir"),
        ),
        deps=(
            Dep(layout.sae_dir("{run}"), "sae", each=RUNS, dvc=layout.SAE_ROOT),
            Dep(layout.metrics_file("{run}"), "metrics", each=RUNS, dvc=layout.EVAL_ROOT),
            Dep(layout.progressive_file("{run}"), "progressive", each=RUNS, dvc=layout.EVAL_ROOT),
            Dep(layout.concepts_dir("{run}"), "concepts", each=RUNS, dvc=layout.CONCEPTS_ROOT),
            *(Dep(layout.probe_dir("{run}", p), p, each=RUNS, dvc=layout.PROBES_ROOT) for p in layout.PROBES),
            Dep("{data.root}", "image_files"),
        ),  # the browser's thumbnails read the images
        report=Report("Comparison", "comparison.rst", patterns=("{name,[^/]+}.png",), labels=(("figure", "{name}"),)),
        report_output=layout.REPORT_DIR,
    ),
)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def option_sections() -> list[Section]:
    """Every params section that holds command options (each path once)."""
    seen: dict[str, Section] = {}
    for s in STAGES:
        for section in s.sections:
            seen.setdefault(section.path, section)
    return list(seen.values())


__all__ = ["STAGES", "Arg", "Dep", "Expansion", "Report", "Section", "Stage", "option_sections", "stage"]
