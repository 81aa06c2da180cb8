"""The offline world's manifest (`msae world render --out DIR`): DIR/manifest.parquet with id,
split, path (relative to DIR), caption, label and the five attr_* columns (docs/internals.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.sources.base import Catalogue, catalogue_from_frame, files_under, filter_split, require_dir, require_file

MANIFEST = "manifest.parquet"


def load(root: Path, split: str | None, allow_outside: bool = False) -> Catalogue:
    """Images of one split of a rendered world (all splits when `split` is None)."""
    require_dir(root, "world folder")
    manifest = require_file(root / MANIFEST, "world manifest (render one with `msae world render --out DIR`)")
    try:
        frame = pd.read_parquet(manifest)
    except (OSError, ValueError) as exc:
        raise MsaeError(f"{manifest}: not a readable Parquet file ({exc})") from exc
    for col in ("id", "path"):
        if col not in frame:
            raise MsaeError(f"{manifest}: missing column {col!r}")
    frame = filter_split(str(manifest), frame, split)
    files = files_under(root, frame["path"].astype(str).tolist(), str(manifest), allow_outside)
    return catalogue_from_frame(str(manifest), frame, files)
