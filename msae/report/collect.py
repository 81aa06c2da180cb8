"""Gather one run's results from the stage directories, and flatten them for `dvc metrics diff`.

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
from msae.io import read_frame, read_json_object
from msae.layout import CONFIG_FILE, METRICS_FILE, PROBES, PROGRESSIVE_FILE, SUMMARY_FILE, TRAIN_LOG_FILE
from msae.sae import variants
from msae.sae.architecture import SAEConfig
from msae.sae.variants.base import Variant

TRAIN_LOG_COLUMNS = ("step", "loss", "fvu", "dead_fraction")
PROGRESSIVE_COLUMNS = ("k", "l0", "active", "fvu", "cs")


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
    run = RunResults(name=name, metrics=read_json_object(metrics_path))
    progressive = eval_dir / name / PROGRESSIVE_FILE
    if progressive.is_file():
        run.progressive = read_frame(progressive, PROGRESSIVE_COLUMNS).sort_values("k").reset_index(drop=True)
    sae_dir = _optional_dir(runs_dir, name)
    if sae_dir is not None:
        if (sae_dir / CONFIG_FILE).is_file():
            run.config = read_json_object(sae_dir / CONFIG_FILE)
            run.architecture = SAEConfig.from_dict(run.config, str(sae_dir / CONFIG_FILE))
        if (sae_dir / TRAIN_LOG_FILE).is_file():
            run.train_log = read_frame(sae_dir / TRAIN_LOG_FILE, TRAIN_LOG_COLUMNS)
    run.concepts_dir = _optional_dir(concepts_dir, name)
    if run.concepts_dir is not None and (run.concepts_dir / SUMMARY_FILE).is_file():
        run.concepts = read_json_object(run.concepts_dir / SUMMARY_FILE)
    probe_root = _optional_dir(probes_dir, name)
    for kind in PROBES:
        kind_dir = _optional_dir(probe_root, kind)
        if kind_dir is None:
            continue
        run.probe_dirs[kind] = kind_dir
        if (kind_dir / SUMMARY_FILE).is_file():
            run.probes[kind] = read_json_object(kind_dir / SUMMARY_FILE)
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


def run_summary(run: RunResults) -> dict[str, float | int]:
    """The run's flat headline numbers: metrics (dense_*, sparse_*, top-level), the end of
    training (train_*), concepts_* and one prefix per probe kind (similarity_*, bias_*)."""
    summary = flatten_numbers(run.metrics)
    if run.train_log is not None and len(run.train_log):
        last = run.train_log.iloc[-1]
        summary["train_steps"] = int(last["step"])
        for column in ("loss", "fvu", "dead_fraction"):
            if math.isfinite(float(last[column])):
                summary[f"train_final_{column}"] = float(last[column])
    if run.concepts is not None:
        summary.update(flatten_numbers(run.concepts, "concepts_"))
    for kind, probe in sorted(run.probes.items()):
        summary.update(flatten_numbers(probe, f"{kind}_"))
    return dict(sorted(summary.items()))
