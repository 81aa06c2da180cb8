"""The results layout: every path and file name the stages write and read, declared once.

Producers (train, evaluate, concepts, probes, report), the report reader, the params checks and
the pipeline table use these names instead of string literals. Path functions take plain string
parts, so the pipeline table can pass placeholders (`{run}` for Snakemake, `${key}` for DVC) and
get the matching template back.

    results/world/<world>/                        images, manifest.parquet, world.json
    results/shards/<data>/<split>_image/<i>/<n>.parquet   one shard of an image split
    results/embeddings/<data>/<split>_image.parquet       gathered image store
    results/embeddings/<data>/<split>_text.parquet        caption store (same ids)
    results/embeddings/<data>/prompts_<name>.parquet      class prompts (zero-shot)
    results/vocab/terms.txt, results/embeddings/vocab/terms.parquet
    results/sae/<run>/          model.safetensors, config.json (written last), train_log.csv
    results/eval/<run>/         metrics.json (written last), progressive.csv
    results/concepts/<run>/     names.parquet, latents.parquet, galleries/, index.html, summary.json
    results/probes/<run>/<probe>/   summary.json (written last) and the probe's files
    results/report/             summary.json, table.md/html, pareto.*, curves, index.html
    results/logs/<stage>/...log one log per job
"""

from __future__ import annotations

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
PROBES = ("similarity", "bias")


def world_dir(world: str) -> str:
    return f"{RESULTS}/world/{world}"


def embeddings_dir(data: str) -> str:
    """Folder of a data source's embedding stores."""
    return f"{RESULTS}/embeddings/{data}"


def image_store(data: str, split: str) -> str:
    return f"{embeddings_dir(data)}/{split}_image.parquet"


def text_store(data: str, split: str) -> str:
    return f"{embeddings_dir(data)}/{split}_text.parquet"


def prompt_store(data: str, prompt: str) -> str:
    return f"{embeddings_dir(data)}/prompts_{prompt}.parquet"


def shard_dir(data: str, split: str) -> str:
    return f"{RESULTS}/shards/{data}/{split}_image"


def shard_store(data: str, split: str, shard: str) -> str:
    """One shard `i/n` of an image split (the slash makes a folder per shard index)."""
    return f"{shard_dir(data, split)}/{shard}.parquet"


VOCAB_TERMS = f"{RESULTS}/vocab/terms.txt"
VOCAB_STORE = f"{embeddings_dir('vocab')}/terms.parquet"


def sae_dir(run: str) -> str:
    return f"{RESULTS}/sae/{run}"


def eval_dir(run: str) -> str:
    return f"{RESULTS}/eval/{run}"


def metrics_file(run: str) -> str:
    return f"{eval_dir(run)}/{METRICS_FILE}"


def progressive_file(run: str) -> str:
    return f"{eval_dir(run)}/{PROGRESSIVE_FILE}"


def concepts_dir(run: str) -> str:
    return f"{RESULTS}/concepts/{run}"


def latents_file(run: str) -> str:
    return f"{concepts_dir(run)}/{LATENTS_FILE}"


def probe_dir(run: str, probe: str) -> str:
    return f"{RESULTS}/probes/{run}/{probe}"


SAE_ROOT = f"{RESULTS}/sae"
EVAL_ROOT = f"{RESULTS}/eval"
CONCEPTS_ROOT = f"{RESULTS}/concepts"
PROBES_ROOT = f"{RESULTS}/probes"
REPORT_DIR = f"{RESULTS}/report"
REPORT_SUMMARY = f"{REPORT_DIR}/{SUMMARY_FILE}"


def log_file(stage: str, *parts: str) -> str:
    """One log per job: results/logs/<stage>[/<part>...].log."""
    return "/".join((f"{RESULTS}/logs", stage, *parts)) + ".log"
