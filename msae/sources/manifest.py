"""A CSV or Parquet manifest with a `path` column (+ optional id, label, caption or text, split,
attr_* columns). Relative paths are resolved against the manifest's folder, so a manifest and
its images can move together."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.sources.base import Catalogue, catalogue_from_frame, filter_split, require_file


def read_table(path: Path) -> pd.DataFrame:
    """Read a .csv / .tsv / .parquet table with a clear error for anything else."""
    require_file(path, "manifest")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False, na_values=[""]
            )
    except (OSError, ValueError) as exc:
        raise MsaeError(f"{path}: cannot read the manifest ({exc})") from exc
    raise MsaeError(f"{path}: manifest must be .csv, .tsv or .parquet")


def load(path: Path, split: str | None) -> Catalogue:
    """Images listed in a manifest, in its row order; `id` defaults to the path as written."""
    frame = read_table(path)
    if "path" not in frame:
        raise MsaeError(f"{path}: manifest needs a 'path' column (has: {', '.join(map(str, frame.columns))})")
    missing = frame["path"].isna()
    if missing.any():
        rows = ", ".join(str(i + 1) for i in frame.index[missing][:10])
        raise MsaeError(f"{path}: empty 'path' in data row(s) {rows} (1-based)")
    frame = filter_split(str(path), frame, split)
    if "id" not in frame:
        frame = frame.assign(id=frame["path"].astype(str))
    files = [Path(p) if Path(p).is_absolute() else path.parent / p for p in frame["path"].astype(str)]
    return catalogue_from_frame(str(path), frame, files)
