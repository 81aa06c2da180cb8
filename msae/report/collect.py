"""Gather one run's results from the stage directories; flatten them (summary.json) and pick the
headline numbers `dvc metrics show | diff` and `dvc exp show` compare (headline/<run>.json).

The report never recomputes a metric: it reads what `msae evaluate`, `msae concepts` and
`msae probe` wrote (docs/internals.md) so the table is exactly the metrics files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from msae.errors import MsaeError
from msae.identity import require_identity, run_identity
from msae.io import read_frame, read_json_object
from msae.layout import (
    CONFIG_FILE,
    METRICS_FILE,
    PROBES,
    PROGRESSIVE_FILE,
    SEEDS_DIR,
    STABILITY_FILE,
    SUMMARY_FILE,
    TEXT_EVAL_PREFIX,
    TRAIN_LOG_FILE,
)
from msae.sae import variants
from msae.sae.architecture import SAEConfig
from msae.sae.variants.base import Variant

# Results written before L0 was split into `l0_zero_fraction` (the paper's L0) and `active` (the
# count of active latents) are not read: rerun `msae evaluate` (and `msae train`) for them.
TRAIN_LOG_COLUMNS = ("step", "loss", "fvu", "active", "dead_fraction")
PROGRESSIVE_COLUMNS = ("k", "l0_zero_fraction", "active", "fvu", "cs")
PATH_METRICS = ("fvu", "cs")  # what every evaluation writes on both paths, whatever inputs it had


def require_complete(metrics: dict[str, Any], where: Path) -> None:
    """Refuse a metrics.json that is not a finished evaluation's (a partial or foreign file)."""
    missing = [k for k in ("variant", "n_latents", "n_eval") if k not in metrics]
    for block in ("dense", "sparse"):
        found = metrics.get(block)
        missing += [f"{block}.{k}" for k in PATH_METRICS if not isinstance(found, dict) or k not in found]
    if missing:
        raise MsaeError(f"{where}: not a complete evaluation (no {', '.join(missing)}); rerun msae evaluate")


@dataclass
class RunResults:
    """Everything the report knows about one run; optional parts are None when absent."""

    name: str
    metrics: dict[str, Any]
    config: dict[str, Any] | None = None
    architecture: SAEConfig | None = None
    progressive: pd.DataFrame | None = None
    train_log: pd.DataFrame | None = None
    concepts: dict[str, Any] | None = None
    concepts_dir: Path | None = None
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe_dirs: dict[str, Path] = field(default_factory=dict)
    cross_modal: dict[str, dict[str, Any]] = field(default_factory=dict)  # text_<split> -> its metrics.json
    seed_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # seed -> the replica's metrics.json
    stability: dict[str, Any] | None = None  # stability.json: the run's seeds' dictionaries matched

    @property
    def variant(self) -> str:
        if self.architecture is not None:
            return self.architecture.variant
        return str(self.metrics.get("variant") or "")

    @property
    def kind(self) -> Variant | None:
        """The run's variant (None for a variant this msae does not know)."""
        return variants.registry().get(self.variant)

    @property
    def is_baseline(self) -> bool:
        """A classic dictionary method (`msae baseline`): its dense path is not its coder."""
        return self.kind is not None and not self.kind.trainable

    @property
    def nested(self) -> bool:
        """A run with nested sparse levels (drawn as one curve in the Pareto plot)."""
        return bool(self.kind and self.kind.nested)

    @property
    def description(self) -> str:
        """Short human label in the paper's style, e.g. 'TopK (k = 64, n = 1024)'."""
        kind = self.kind
        name = kind.label if kind else (self.variant or "SAE")
        detail = kind.describe(self.architecture.arch) if kind and self.architecture else ""
        n = self.metrics.get("n_latents") or (self.architecture.n_latents if self.architecture else None)
        parts = [p for p in (detail, f"n = {n}" if n else "") if p]
        return f"{name} ({', '.join(parts)})" if parts else name


def discover_runs(runs_dir: Path | None, eval_dir: Path) -> list[str]:
    """Run names: the finished training directories if given (so a run that was never evaluated
    is reported as an error instead of silently missing), else the evaluation directories."""
    if runs_dir is not None and runs_dir.is_dir():
        base, done_file = runs_dir, CONFIG_FILE  # written last by `msae train`
    else:
        base, done_file = eval_dir, ""
    if not base.is_dir():
        raise MsaeError(f"{base}: no such directory (pass --runs/--eval or explicit --run names)")
    names = sorted(
        p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / done_file).exists()
    )
    if not names:
        raise MsaeError(f"{base}: contains no run directories")
    return names


def _optional_dir(parent: Path | None, name: str) -> Path | None:
    if parent is None:
        return None
    path = parent / name
    return path if path.is_dir() else None


def _evaluation(path: Path) -> dict[str, Any]:
    metrics = read_json_object(path)
    require_complete(metrics, path)
    return metrics


def _load_other_evaluations(run: RunResults, folder: Path, expected: dict[str, str]) -> None:
    """The run's evaluations beside metrics.json: on captions (text_<split>/, the same SAE), of its
    seed replicas (seeds/<seed>/, each its own SAE) and their stability (stability.json)."""
    for path in sorted(folder.glob(f"{TEXT_EVAL_PREFIX}*/{METRICS_FILE}")):
        run.cross_modal[path.parent.name] = _evaluation(path)
        require_identity(run.cross_modal[path.parent.name], expected, str(path))
    replicas = sorted(folder.glob(f"{SEEDS_DIR}/*/{METRICS_FILE}"), key=lambda p: (len(p.parent.name), p.parent.name))
    run.seed_metrics = {path.parent.name: _evaluation(path) for path in replicas}
    if (folder / STABILITY_FILE).is_file():
        run.stability = read_json_object(folder / STABILITY_FILE)


def load_run(
    name: str,
    eval_dir: Path,
    runs_dir: Path | None = None,
    concepts_dir: Path | None = None,
    probes_dir: Path | None = None,
) -> RunResults:
    """Load one run; metrics.json is required, every other part is optional."""
    metrics_path = eval_dir / name / METRICS_FILE
    if not metrics_path.is_file():
        raise MsaeError(
            f"run {name!r}: {metrics_path} not found (run `msae evaluate` for it, or leave it out with --run)"
        )
    run = RunResults(name=name, metrics=_evaluation(metrics_path))
    expected: dict[str, str] = {}
    progressive = eval_dir / name / PROGRESSIVE_FILE
    if progressive.is_file():
        run.progressive = read_frame(progressive, PROGRESSIVE_COLUMNS).sort_values("k").reset_index(drop=True)
    sae_dir = _optional_dir(runs_dir, name)
    if sae_dir is not None:
        if (sae_dir / CONFIG_FILE).is_file():
            run.config = read_json_object(sae_dir / CONFIG_FILE)
            run.architecture = SAEConfig.from_dict(run.config, str(sae_dir / CONFIG_FILE))
            expected = {"sae": run_identity(sae_dir)}  # every result of the run must come from this SAE
            require_identity(run.metrics, expected, str(metrics_path))
        if (sae_dir / TRAIN_LOG_FILE).is_file():
            run.train_log = read_frame(sae_dir / TRAIN_LOG_FILE, TRAIN_LOG_COLUMNS)
    _load_other_evaluations(run, eval_dir / name, expected)
    run.concepts_dir = _optional_dir(concepts_dir, name)
    if run.concepts_dir is not None and (run.concepts_dir / SUMMARY_FILE).is_file():
        run.concepts = read_json_object(run.concepts_dir / SUMMARY_FILE)
        require_identity(run.concepts, expected, str(run.concepts_dir / SUMMARY_FILE))
    probe_root = _optional_dir(probes_dir, name)
    for kind in PROBES:
        kind_dir = _optional_dir(probe_root, kind)
        if kind_dir is None:
            continue
        run.probe_dirs[kind] = kind_dir
        if (kind_dir / SUMMARY_FILE).is_file():
            run.probes[kind] = read_json_object(kind_dir / SUMMARY_FILE)
            require_identity(run.probes[kind], expected, str(kind_dir / SUMMARY_FILE))
    return run


def flatten_numbers(obj: dict[str, Any], prefix: str = "") -> dict[str, float | int]:
    """Nested dict -> {"a_b": number}; keeps finite int/float only (no bools, strings, lists),
    so every key `dvc metrics diff` shows is a comparable number."""
    flat: dict[str, float | int] = {}
    for key, value in obj.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, f"{full}_"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[full] = value
    return flat


# The headline of a run: (key in headline/<run>.json, where it is read). Few enough that
# `dvc metrics show` prints one readable row per run; every number is also in summary.json.
HEADLINE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fvu", "metrics", ("dense", "fvu")),
    ("l0_zero_fraction", "metrics", ("dense", "l0_zero_fraction")),
    ("active", "metrics", ("dense", "active")),
    ("cs", "metrics", ("dense", "cs")),
    ("cknna", "metrics", ("dense", "cknna")),
    ("sparse_fvu", "metrics", ("sparse", "fvu")),
    ("zeroshot_retained", "metrics", ("zeroshot_retained",)),
    ("valid_concepts", "concepts", ("valid_concepts",)),
)
# Read on the dense path (ReLU over all latents), which is not a classic baseline's coder: a
# baseline's headline has only its sparse-path and concept numbers.
DENSE_HEADLINE = ("fvu", "l0_zero_fraction", "active", "cs", "cknna", "zeroshot_retained")


def headline(run: RunResults) -> dict[str, float | int]:
    """The run's headline numbers (dense path unless named `sparse_`); absent inputs are left out."""
    numbers: dict[str, float | int] = {}
    for key, source, path in HEADLINE:
        if key in DENSE_HEADLINE and run.is_baseline:
            continue
        value: Any = run.concepts if source == "concepts" else run.metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            numbers[key] = value
    return numbers


def run_summary(run: RunResults) -> dict[str, float | int]:
    """The run's flat headline numbers: metrics (dense_*, sparse_*, top-level), the end of
    training (train_*), concepts_* and one prefix per probe kind (similarity_*, bias_*)."""
    summary = flatten_numbers(run.metrics)
    if run.train_log is not None and len(run.train_log):
        last = run.train_log.iloc[-1]
        summary["train_steps"] = int(last["step"])
        for column in ("loss", "fvu", "active", "dead_fraction"):
            if math.isfinite(float(last[column])):
                summary[f"train_final_{column}"] = float(last[column])
    if run.concepts is not None:
        summary.update(flatten_numbers(run.concepts, "concepts_"))
    for kind, probe in sorted(run.probes.items()):
        summary.update(flatten_numbers(probe, f"{kind}_"))
    return dict(sorted(summary.items()))
