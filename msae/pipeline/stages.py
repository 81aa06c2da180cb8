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

from collections.abc import Mapping
from typing import Any

from msae import layout
from msae.baselines.config import BaselineConfig
from msae.config.concepts import ConceptsConfig
from msae.config.embed import BackboneOptions, EmbedConfig, GatherConfig, MixConfig, VocabConfig
from msae.config.evaluate import EvaluateConfig, StabilityConfig
from msae.config.probes import BiasConfig, SimilarityConfig
from msae.config.report import ReportConfig
from msae.config.reseed import ReseedConfig
from msae.config.train import train_spec
from msae.config.world import RenderConfig
from msae.pipeline.declare import Arg, Dep, Expansion, Report, Role, Section, Stage, spec_of

RUNS = Expansion(("run",), ("runs",), mapping=True)
WORLDS = Expansion(("world",), ("worlds",), mapping=True)
PROMPTS = Expansion(("prompt",), ("data.prompts",), mapping=True)
IMAGE_SPLITS = Expansion(("split",), ("data.images",))
CAPTION_SPLITS = Expansion(("split",), ("data.captions",))
BOTH_SPLITS = Expansion(("split",), ("data.both",))
SHARDS = Expansion(("split", "shard"), ("data.images", "embed.shards"))


def _run_fits_backbone(config: Any, params: Mapping[str, Any]) -> None:
    """k, nesting and AuxK sizes must fit n = int(expansion x d), d from the backbone's config."""
    from msae.pipeline.params import embedding_dim

    dim = embedding_dim(params["backbone"]["model"])
    if dim is not None:  # unknown architecture (a local checkpoint): `msae train` checks the data
        config.architecture(dim)


DATA = "{data.name}"
STORES = Dep(layout.embeddings_dir(DATA), "stores", stores=True)
EMBED_WIRED = ("source", "root", "split", "modality", "template", "dataset", "shard", "out", "model", "pretrained")
BACKBONE = Section("backbone", spec_of(BackboneOptions))
EMBED_OPTIONS = Section("embed.options", spec_of(EmbedConfig), exclude=EMBED_WIRED)
PROMPT = Section("data.prompts.{prompt}", spec_of(EmbedConfig), include=("root", "template"))
SAE = Arg("sae", layout.sae_dir("{run}"), "in")
SPLIT_SOURCE = (Arg("source", "{data.source}"), Arg("root", "{data.root}", "in"), Arg("split", "{split}"))

BASELINES = Expansion(("baseline",), ("baselines",), mapping=True)
BASELINE = layout.baseline_name("{baseline}")  # the run name of a baseline: results/sae/baseline-<name>
SEEDED = Expansion(("run",), ("stability.runs",))
REPLICAS = Expansion(("run", "seed"), ("stability.runs", "stability.seeds"))
SEEDED_REPLICAS = Expansion(("seeded", "seed"), ("stability.runs", "stability.seeds"))
LANGUAGE = Expansion(("run", "split"), ("runs", "data.language"))
WIRED_EVAL = ("sae", "out", "modality")  # set by each evaluation stage, never in params.yaml
EVAL_OPTIONS = Section("evaluate", spec_of(EvaluateConfig), exclude=WIRED_EVAL)


def _metrics(directory: str, role: Role = "out") -> tuple[Dep, Dep]:
    """The files `msae evaluate --out DIRECTORY` writes (metrics.json last)."""
    return (
        Dep(f"{directory}/{layout.METRICS_FILE}", "metrics", role),
        Dep(f"{directory}/{layout.PROGRESSIVE_FILE}", "progressive", "out"),
    )


def _evaluate(
    name: str, comment: str, sae: str, out: str, expansion: Expansion, modality: str = "image", **extra: Any
) -> Stage:
    """An `msae evaluate` job per run (or replica, or baseline) with the `evaluate:` options. The
    modality of its store is stated, so a caption-trained run is evaluated on images and an
    image-trained one on captions (the paper's Table 2) on purpose, never by mistake."""
    return Stage(
        name,
        "evaluate",
        comment,
        spec=spec_of(EvaluateConfig),
        args=(Arg("sae", sae, "in"), *extra.pop("args", ()), Arg("modality", modality), Arg("out", out)),
        sections=extra.pop("sections", (EVAL_OPTIONS,)),
        expansion=expansion,
        torch=True,
        deps=(STORES, *_metrics(out, extra.pop("role", "out"))),
        **extra,
    )


def _concepts(name: str, comment: str, run: str, expansion: Expansion, **extra: Any) -> Stage:
    return Stage(
        name,
        "concepts",
        comment,
        spec=spec_of(ConceptsConfig),
        args=(
            Arg("sae", layout.sae_dir(run), "in"),
            Arg("vocab", layout.VOCAB_STORE, "in"),
            Arg("out", layout.concepts_dir(run), "dir"),
        ),
        sections=(Section("concepts", spec_of(ConceptsConfig), exclude=("sae", "vocab", "out")),),
        expansion=expansion,
        torch=True,
        deps=(STORES,),
        **extra,
    )


def _each(template: str, name: str, expansion: Expansion, dvc: str) -> Dep:
    return Dep(template, name, each=expansion, dvc=dvc)


def _evaluations(directory: str, prefix: str, expansion: Expansion) -> tuple[Dep, Dep]:
    """The report's inputs from every `msae evaluate --out DIRECTORY` of an expansion (DVC: the
    evaluations folder)."""
    return tuple(  # type: ignore[return-value]
        _each(f"{directory}/{name}", f"{prefix}{name.split('.')[0]}", expansion, layout.EVAL_ROOT)
        for name in (layout.METRICS_FILE, layout.PROGRESSIVE_FILE)
    )


def _embed(name: str, comment: str, *args: Arg, **extra: Any) -> Stage:
    """An `msae embed` job (a source through the CLIP backbone) with the `backbone` and `embed.options` sections."""
    sections = extra.pop("sections", (BACKBONE, EMBED_OPTIONS))
    return Stage(name, "embed", comment, spec=spec_of(EmbedConfig), args=args, sections=sections, torch=True, **extra)


def _sectioned(name: str, command: str, comment: str, spec: Any, out: Arg, section: str, **extra: Any) -> Stage:
    """A stage whose options are one params.yaml section (every key but the wired `out`)."""
    return Stage(
        name, command, comment, spec=spec, args=(out,), sections=(Section(section, spec, exclude=("out",)),), **extra
    )


STAGES: tuple[Stage, ...] = (
    _sectioned(
        "world",
        "world render",
        "The offline world: `msae world render` per entry of `worlds:`.",
        spec_of(RenderConfig),
        Arg("out", layout.world_dir("{world}"), "dir"),
        "worlds.{world}",
        expansion=WORLDS,
    ),
    _embed(
        "embed_images",
        "Image stores, one job per shard of each split in `data.images`.",
        *SPLIT_SOURCE,
        Arg("dataset", DATA),
        Arg("shard", "{shard}"),
        Arg("out", layout.shard_store(DATA, "{split}", "{shard}"), "out"),
        expansion=SHARDS,
    ),
    Stage(
        "gather_images",
        "gather",
        "The shards of each image split, gathered into one store.",
        spec=spec_of(GatherConfig),
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
    _embed(
        "embed_captions",
        "Caption stores of the splits in `data.captions` (same ids as the images).",
        *SPLIT_SOURCE,
        Arg("modality", "text"),
        Arg("dataset", DATA),
        Arg("out", layout.text_store(DATA, "{split}"), "out"),
        expansion=CAPTION_SPLITS,
    ),
    Stage(
        "mix",
        "mix",
        "Stores of both modalities (images and captions mixed) of the splits in `data.both`.",
        spec=spec_of(MixConfig),
        args=tuple(
            Arg(key, store(DATA, "{split}"), "out" if key == "out" else "in")
            for key, store in (("image", layout.image_store), ("text", layout.text_store), ("out", layout.both_store))
        ),
        expansion=BOTH_SPLITS,
    ),
    _embed(
        "embed_prompts",
        "Class-prompt stores (zero-shot classifiers), one per `data.prompts` entry.",
        Arg("source", "classes"),
        Arg("dataset", DATA),
        Arg("out", layout.prompt_store(DATA, "{prompt}"), "out"),
        sections=(PROMPT, BACKBONE, EMBED_OPTIONS),
        expansion=PROMPTS,
        deps=(Dep("{data.prompts.{prompt}.root}", "classes"),),
    ),
    _sectioned(
        "vocab", "vocab", "The naming vocabulary.", spec_of(VocabConfig), Arg("out", layout.VOCAB_TERMS, "out"), "vocab"
    ),
    _embed(
        "embed_vocab",
        "The vocabulary's text embeddings (no prompt template, as the paper).",
        Arg("source", "terms"),
        Arg("root", layout.VOCAB_TERMS, "in"),
        Arg("dataset", "vocab"),
        Arg("out", layout.VOCAB_STORE, "out"),
    ),
    _sectioned(
        "train",
        "train",
        "One SAE per entry of `runs:`, on the store its `embeddings` names (images, captions, ...).",
        train_spec,
        Arg("out", layout.sae_dir("{run}"), "dir"),
        "runs.{run}",
        expansion=RUNS,
        torch=True,
        deps=(Dep("{runs.{run}.embeddings}", "embeddings"),),
        check=_run_fits_backbone,
    ),
    _sectioned(
        "baseline",
        "baseline",
        "Classic dictionary methods (`baselines:`), fitted as SAE run directories results/sae/baseline-<name>.",
        spec_of(BaselineConfig),
        Arg("out", layout.sae_dir(BASELINE), "dir"),
        "baselines.{baseline}",
        expansion=BASELINES,
        deps=(Dep("{baselines.{baseline}.embeddings}", "embeddings"),),
    ),
    Stage(
        "reseed",
        "reseed",
        "Seed stability: each run of `stability.runs` trained again at each of `stability.seeds`.",
        spec=spec_of(ReseedConfig),
        args=(SAE, Arg("seed", "{seed}"), Arg("out", layout.seed_dir("{run}", "{seed}"), "dir")),
        expansion=REPLICAS,
        torch=True,
    ),
    _evaluate(
        "evaluate",
        "Metrics of each run on the images; the stores used are the `evaluate:` options.",
        layout.sae_dir("{run}"),
        layout.eval_dir("{run}"),
        RUNS,
        role="metrics",
        report=Report("Metrics", "metrics.rst", labels=(("run", "{run}"), ("file", "metrics.json"))),
        report_output=layout.metrics_file("{run}"),
    ),
    _evaluate(
        "evaluate_text",
        "Language metrics (the paper's Table 2): each run on the captions of each split in `data.language`.",
        layout.sae_dir("{run}"),
        layout.text_eval_dir("{run}", "{split}"),
        LANGUAGE,
        modality="text",
        args=(Arg("embeddings", layout.text_store(DATA, "{split}"), "in"),),
        sections=(Section("evaluate_text", spec_of(EvaluateConfig), exclude=WIRED_EVAL + ("embeddings",)),),
    ),
    _evaluate(
        "evaluate_seed",
        "Metrics of each seed replica on the images (`evaluate:` options).",
        layout.seed_dir("{run}", "{seed}"),
        layout.seed_eval_dir("{run}", "{seed}"),
        REPLICAS,
    ),
    _evaluate(
        "evaluate_baseline",
        "Metrics of each classic baseline on the images (`evaluate:` options).",
        layout.sae_dir(BASELINE),
        layout.eval_dir(BASELINE),
        BASELINES,
    ),
    Stage(
        "stability",
        "stability",
        "Decoder atoms of every pair of a run's seeds matched one to one (Paulo & Belrose 2025).",
        spec=spec_of(StabilityConfig),
        args=(
            Arg("sae-a", layout.sae_dir("{run}"), "in"),
            Arg("threshold", "{stability.threshold}"),
            Arg("out", layout.stability_file("{run}"), "out"),
            Arg("runs", layout.seed_dir("{run}", "*"), glob=True, positional=True),
        ),
        expansion=SEEDED,
        # Every replica of every seeded run (a stability job reruns, in seconds, when another run's
        # replicas change): what both tools can state without a per-run list (see the report).
        deps=(_each(layout.seed_dir("{seeded}", "{seed}"), "replicas", SEEDED_REPLICAS, layout.SEEDS_ROOT),),
    ),
    _concepts(
        "concepts",
        "Named concepts of each run: names, valid latents, galleries.",
        "{run}",
        RUNS,
        report=Report(
            "Concept galleries", "gallery.rst", patterns=("galleries/{name}.png",), labels_function="gallery_labels"
        ),
        report_output=layout.concepts_dir("{run}"),
    ),
    _concepts("concepts_baseline", "Named concepts of each classic baseline.", BASELINE, BASELINES),
    *(
        Stage(
            f"probe_{probe}",
            f"probe {command}",
            comment,
            spec=spec_of(spec),
            args=(
                SAE,
                Arg("concepts", layout.latents_file("{run}")),
                Arg("out", layout.probe_dir("{run}", probe), "dir"),
            ),
            sections=(Section(f"probes.{probe}", spec_of(spec), exclude=("sae", "concepts", "out")),),
            expansion=RUNS,
            torch=True,
            deps=(Dep(layout.concepts_dir("{run}"), "concepts"), STORES),
        )
        for probe, command, spec, comment in (
            ("similarity", "similarity", SimilarityConfig, "The similarity probe of each run."),
            (
                "bias",
                "bias",
                BiasConfig,
                "The bias probe of each run (classifier trained with the planted correlation).",
            ),
            (
                "bias_control",
                "bias",
                BiasConfig,
                "The same bias probe with its classifier trained without the correlation (the contrast).",
            ),
        )
    ),
    Stage(
        "report",
        "report",
        "The comparison of all runs (`msae report` reads every run folder under results/).",
        spec=spec_of(ReportConfig),
        args=(
            Arg("runs", layout.SAE_ROOT),
            Arg("eval", layout.EVAL_ROOT),
            Arg("concepts", layout.CONCEPTS_ROOT),
            Arg("probes", layout.PROBES_ROOT),
            Arg("images", "{concepts.images}", "in"),
            Arg("out", layout.REPORT_DIR, "dir"),
        ),
        deps=(
            _each(layout.sae_dir("{run}"), "sae", RUNS, layout.SAE_ROOT),
            *_evaluations(layout.eval_dir("{run}"), "", RUNS),
            _each(layout.concepts_dir("{run}"), "concepts", RUNS, layout.CONCEPTS_ROOT),
            *(_each(layout.probe_dir("{run}", p), p, RUNS, layout.PROBES_ROOT) for p in layout.PROBES),
            *_evaluations(layout.text_eval_dir("{run}", "{split}"), "language_", LANGUAGE),
            *_evaluations(layout.seed_eval_dir("{run}", "{seed}"), "seed_", REPLICAS),
            _each(layout.stability_file("{run}"), "stability", SEEDED, layout.EVAL_ROOT),
            _each(layout.sae_dir(BASELINE), "baselines", BASELINES, layout.SAE_ROOT),
            *_evaluations(layout.eval_dir(BASELINE), "baseline_", BASELINES),
            _each(layout.concepts_dir(BASELINE), "baseline_concepts", BASELINES, layout.CONCEPTS_ROOT),
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
