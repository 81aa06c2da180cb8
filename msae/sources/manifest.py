"""A CSV or Parquet manifest with a `path` column (+ optional id, label, caption or text, split,
attr_* columns). Paths are resolved against the manifest's folder, so a manifest and its images
can move together; a path outside that folder (absolute, or with '..') is refused unless
`--allow-outside-root` says the manifest is trusted to point anywhere. CSV/TSV must be UTF-8."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.io import read_text
from msae.sources.base import Catalogue, catalogue_from_frame, files_under, filter_split, require_file


def read_table(path: Path) -> pd.DataFrame:
    """Read a .csv / .tsv / .parquet table with a clear error for anything else."""
    require_file(path, "manifest")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            text = read_text(path, "manifest")
            return pd.read_csv(
                io.StringIO(text),
                sep="\t" if suffix == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
            )
    except (OSError, ValueError) as exc:
        raise MsaeError(f"{path}: cannot read the manifest ({exc})") from exc
    raise MsaeError(f"{path}: manifest must be .csv, .tsv or .parquet")


def load(path: Path, split: str | None, allow_outside: bool = False) -> Catalogue:
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
    files = files_under(path.parent, frame["path"].astype(str).tolist(), str(path), allow_outside)
    return catalogue_from_frame(str(path), frame, files)
