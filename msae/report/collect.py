"""Gather one run's results from the stage directories, and flatten them for `dvc metrics diff`.

The report never recomputes a metric: it reads what `msae evaluate`, `msae concepts` and
`msae probe` wrote (docs/internals.md) so the table is exactly the metrics files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from msae.errors import MsaeError

TRAIN_LOG_COLUMNS = ("step", "loss", "fvu", "dead_fraction")
PROGRESSIVE_COLUMNS = ("k", "l0", "active", "fvu", "cs")
PROBE_KINDS = ("similarity", "bias")

VARIANT_NAMES = {  # in the paper's table order
    "relu": "ReLU",
    "topk": "TopK",
    "batchtopk": "BatchTopK",
    "jumprelu": "JumpReLU",
    "matryoshka": "Matryoshka",
}


@dataclass
class RunResults:
    """Everything the report knows about one run; optional parts are None when absent."""

    name: str
    metrics: dict[str, Any]
    config: dict[str, Any] | None = None
    progressive: pd.DataFrame | None = None
    train_log: pd.DataFrame | None = None
    concepts: dict[str, Any] | None = None
    concepts_dir: Path | None = None
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str((self.config or {}).get("variant") or self.metrics.get("variant") or "")

    @property
    def description(self) -> str:
        """Short human label in the paper's style, e.g. 'TopK (k = 64)' or 'Matryoshka (RW)'."""
        config = self.config or {}
        name = VARIANT_NAMES.get(self.variant, self.variant or "SAE")
        detail = ""
        if self.variant == "relu" and config.get("l1") is not None:
            detail = f"λ = {config['l1']:g}"
        elif self.variant in ("topk", "batchtopk") and config.get("k") is not None:
            detail = f"k = {config['k']}"
        elif self.variant == "matryoshka" and config.get("weighting"):
            detail = str(config["weighting"]).upper()
        n = self.metrics.get("n_latents") or config.get("n_latents")
        parts = [p for p in (detail, f"n = {n}" if n else "") if p]
        return f"{name} ({', '.join(parts)})" if parts else name


def read_json_file(path: Path) -> dict[str, Any]:
    """Read a JSON object, naming the file when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MsaeError(f"{path}: cannot read JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MsaeError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_csv_file(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV and check the columns the report plots, naming the file and missing column."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise MsaeError(f"{path}: cannot read CSV ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MsaeError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")
    return frame


def discover_runs(runs_dir: Path | None, eval_dir: Path) -> list[str]:
    """Run names: the finished training directories if given (so a run that was never evaluated
    is reported as an error instead of silently missing), else the evaluation directories."""
    if runs_dir is not None and runs_dir.is_dir():
        base, done_file = runs_dir, "config.json"  # written last by `msae train`
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
    metrics_path = eval_dir / name / "metrics.json"
    if not metrics_path.is_file():
        raise MsaeError(f"run {name!r}: {metrics_path} not found (run `msae evaluate` for it, or leave it out with --run)")
    run = RunResults(name=name, metrics=read_json_file(metrics_path))
    progressive = eval_dir / name / "progressive.csv"
    if progressive.is_file():
        run.progressive = read_csv_file(progressive, PROGRESSIVE_COLUMNS).sort_values("k").reset_index(drop=True)
    sae_dir = _optional_dir(runs_dir, name)
    if sae_dir is not None:
        if (sae_dir / "config.json").is_file():
            run.config = read_json_file(sae_dir / "config.json")
        if (sae_dir / "train_log.csv").is_file():
            run.train_log = read_csv_file(sae_dir / "train_log.csv", TRAIN_LOG_COLUMNS)
    run.concepts_dir = _optional_dir(concepts_dir, name)
    if run.concepts_dir is not None and (run.concepts_dir / "summary.json").is_file():
        run.concepts = read_json_file(run.concepts_dir / "summary.json")
    probe_root = _optional_dir(probes_dir, name)
    for kind in PROBE_KINDS:
        kind_dir = _optional_dir(probe_root, kind)
        if kind_dir is None:
            continue
        run.probe_dirs[kind] = kind_dir
        if (kind_dir / "summary.json").is_file():
            run.probes[kind] = read_json_file(kind_dir / "summary.json")
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
