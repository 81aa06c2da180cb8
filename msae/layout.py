"""The results layout: every path and file name the stages write and read, declared once.

Producers (train, evaluate, concepts, probes, report), the report reader, the params checks and
the pipeline table use these names instead of string literals. Path functions take plain string
parts, so the pipeline table can pass placeholders (`{run}` for Snakemake, `${key}` for DVC) and
get the matching template back.

    results/world/<world>/                        images, manifest.parquet, world.json
    results/shards/<data>/<split>_image/<i>/<n>.parquet   one shard of an image split
    results/embeddings/<data>/<split>_image.parquet       gathered image store
    results/embeddings/<data>/<split>_text.parquet        caption store (same ids)
    results/mixed/<data>/<split>_both.parquet     images and captions mixed (msae mix): a training
                                                  store only, outside the folder evaluations read
    results/embeddings/<data>/prompts_<name>.parquet      class prompts (zero-shot)
    results/vocab/terms.txt, results/embeddings/vocab/terms.parquet
    results/sae/<run>/          model.safetensors, config.json (written last), train_log.csv
    results/sae/baseline-<name>/    a classic dictionary method (msae baseline) in the same format
    results/seeds/<run>/<seed>/     the run trained again at another seed (msae reseed)
    results/eval/<run>/         metrics.json (written last), progressive.csv: the held-out images
    results/eval/<run>/text_<split>/    the same on the held-out captions of <split> (language)
    results/eval/<run>/seeds/<seed>/    the seed replica's evaluation on the images
    results/eval/<run>/stability.json   dictionaries of all the run's seeds matched pairwise
    results/concepts/<run>/     names.parquet, latents.parquet, galleries/, index.html, summary.json
    results/probes/<run>/<probe>/   summary.json (written last) and the probe's files
    results/report/             summary.json, table.md/html, pareto.*, curves, index.html
    results/logs/<stage>/...log one log per job
"""

from __future__ import annotations

from collections.abc import Callable

RESULTS = "results"

# File names inside a run's directories.
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"  # the SAE run's done file
TRAIN_LOG_FILE = "train_log.csv"
CHECKPOINT_DIR = "checkpoint"
TRAINING_STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"  # the evaluation's done file
PROGRESSIVE_FILE = "progressive.csv"
SUMMARY_FILE = "summary.json"  # done file of concepts, probes and the report
NAMES_FILE = "names.parquet"
LATENTS_FILE = "latents.parquet"
GALLERY_DIR = "galleries"
INDEX_FILE = "index.html"
PARETO_CSV = "pareto.csv"
BROWSER_DIR = "browser"  # the report's concept browser (index.html, data/, thumbnails/)
CURVES_CSV = "train_curves.csv"
# Probe kinds: bias_control is the bias probe with its classifier trained without the planted
# correlation, the contrast that shows the spurious concept of `bias`.
PROBES = ("similarity", "bias", "bias_control")
TEXT_EVAL_PREFIX = "text_"  # results/eval/<run>/text_<split>/: language metrics on <split>'s captions
SEEDS_DIR = "seeds"
STABILITY_FILE = "stability.json"
BASELINE_PREFIX = "baseline-"  # not an identifier character: no run name can collide with a baseline


SAE_ROOT = f"{RESULTS}/sae"
SEEDS_ROOT = f"{RESULTS}/seeds"
EVAL_ROOT = f"{RESULTS}/eval"
CONCEPTS_ROOT = f"{RESULTS}/concepts"
PROBES_ROOT = f"{RESULTS}/probes"
REPORT_DIR = f"{RESULTS}/report"
REPORT_SUMMARY = f"{REPORT_DIR}/{SUMMARY_FILE}"
# OUT/headline/<run>.json: each run's headline numbers, the only files dvc.yaml declares as metrics
# (so `dvc metrics show` is one row per run).
HEADLINE_DIR = "headline"
REPORT_HEADLINE = f"{REPORT_DIR}/{HEADLINE_DIR}"


# The path functions, each declared from its parent: `_per_name(root)` gives root/<name>,
# `_inside(folder, entry)` the fixed entry folder(<name>)/entry, and `_nested(folder, prefix,
# suffix)` folder(<a>)/<prefix><b><suffix>.
def _per_name(root: str) -> Callable[[str], str]:
    return lambda name: f"{root}/{name}"


def _inside(folder: Callable[[str], str], entry: str) -> Callable[[str], str]:
    return lambda name: f"{folder(name)}/{entry}"


def _nested(folder: Callable[[str], str], prefix: str = "", suffix: str = "") -> Callable[[str, str], str]:
    return lambda outer, inner: f"{folder(outer)}/{prefix}{inner}{suffix}"


world_dir = _per_name(f"{RESULTS}/world")
embeddings_dir = _per_name(f"{RESULTS}/embeddings")  # a data source's embedding stores
image_store = _nested(embeddings_dir, suffix="_image.parquet")  # (data, split)
text_store = _nested(embeddings_dir, suffix="_text.parquet")  # (data, split)
# (data, split): images and captions mixed, for training only; kept out of embeddings_dir, which
# every evaluation depends on as a whole (DVC), so adding a mixed store reruns no evaluation
both_store = _nested(_per_name(f"{RESULTS}/mixed"), suffix="_both.parquet")
prompt_store = _nested(embeddings_dir, "prompts_", ".parquet")  # (data, prompt)
shard_dir = _nested(_per_name(f"{RESULTS}/shards"), suffix="_image")  # (data, split)
VOCAB_TERMS = f"{RESULTS}/vocab/terms.txt"
VOCAB_STORE = f"{embeddings_dir('vocab')}/terms.parquet"
sae_dir = _per_name(SAE_ROOT)
seed_dir = _nested(_per_name(SEEDS_ROOT))  # (run, seed): the run trained again at `seed`
eval_dir = _per_name(EVAL_ROOT)
text_eval_dir = _nested(eval_dir, TEXT_EVAL_PREFIX)  # (run, split): language evaluation on split's captions
seed_eval_dir = _nested(eval_dir, f"{SEEDS_DIR}/")  # (run, seed)
stability_file = _inside(eval_dir, STABILITY_FILE)
metrics_file = _inside(eval_dir, METRICS_FILE)
progressive_file = _inside(eval_dir, PROGRESSIVE_FILE)
concepts_dir = _per_name(CONCEPTS_ROOT)
latents_file = _inside(concepts_dir, LATENTS_FILE)
probe_dir = _nested(_per_name(PROBES_ROOT))  # (run, probe)


def shard_store(data: str, split: str, shard: str) -> str:
    """One shard `i/n` of an image split (the slash makes a folder per shard index)."""
    return f"{shard_dir(data, split)}/{shard}.parquet"


def baseline_name(name: str) -> str:
    """The run name (results folder) of a `baselines:` entry."""
    return f"{BASELINE_PREFIX}{name}"


def log_file(stage: str, *parts: str) -> str:
    """One log per job: results/logs/<stage>[/<part>...].log."""
    return "/".join((f"{RESULTS}/logs", stage, *parts)) + ".log"
