"""Snakemake report labels that name each concept gallery by its concept, not its file name.

    report(directory("results/concepts/{run}"), patterns=["galleries/{name}.png"],
           category="Concept galleries", subcategory="{run}", labels=gallery_labels,
           caption="../report/gallery.rst")

Snakemake calls `gallery_labels(wildcards, output)` once per gallery file: `wildcards.name` is
the file's stem (latent_000011), `output[0]` the concepts directory with latents.parquet.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from msae.errors import MsaeError

GALLERY_STEM = re.compile(r"latent_(\d+)")


@lru_cache(maxsize=64)
def _names(latents_path: str, mtime_ns: int) -> dict[int, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(latents_path, columns=["latent", "name"]).to_pydict()
    return dict(zip(table["latent"], table["name"]))


def concept_names(concepts_dir: str | Path) -> dict[int, str]:
    """latent id -> concept name from a concepts directory (read once per file version)."""
    path = Path(concepts_dir) / "latents.parquet"
    try:
        return _names(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError) as exc:
        raise MsaeError(f"{path}: cannot read the latent names ({exc})") from exc


def gallery_labels(wildcards: Any, output: Any) -> dict[str, str]:
    """{concept, latent, run} of the gallery file `wildcards.name` of `output[0]`."""
    match = GALLERY_STEM.fullmatch(str(wildcards.name))
    if match is None:
        raise MsaeError(f"{output[0]}/galleries/{wildcards.name}.png: not a gallery file name (latent_NNNNNN)")
    latent = int(match.group(1))
    names = concept_names(output[0])
    if latent not in names:
        raise MsaeError(f"{output[0]}/latents.parquet: has no latent {latent} (gallery {wildcards.name}.png)")
    return {"concept": str(names[latent]), "latent": str(latent), "run": str(wildcards.run)}
