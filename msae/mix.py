"""`msae mix`: one training store of both modalities, the image and caption stores of a split
interleaved (modality `both`), so an SAE can be trained on image and text embeddings at once.

The two stores share ids (a caption describes the image of the same id); the mixed store prefixes
them (`image:<id>`, `text:<id>`) and says each row's modality in a `modality` column. Rows are
interleaved in proportion to the stores' sizes, so every row group holds both modalities and a
streamed training run sees both in every stretch of batches. Training normalises the mixed set as
one: one mean (between the two modality means, across the modality gap) and one scale.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from msae.config.embed import MixConfig
from msae.embed_files import concatenate_stores
from msae.errors import MsaeError
from msae.store import read_meta, require_same_backbone, require_unique_ids

SHARED_KEYS = ("dataset", "split")  # recorded on the mixed store when both inputs agree


def mix(image: Path, text: Path, out: Path) -> int:
    """Write the mixed store of `image` and `text` to `out`; returns its row count."""
    metas = {}
    for path, modality in ((image, "image"), (text, "text")):
        meta = read_meta(path)
        if meta["modality"] != modality:
            raise MsaeError(
                f"{path}: expected {modality} embeddings here, but the store holds modality {meta['modality']!r}"
            )
        if pq.ParquetFile(path).metadata.num_rows == 0:
            raise MsaeError(f"{path}: the embedding file is empty (0 rows)")
        require_unique_ids(pq.read_table(path, columns=["id"]).column("id"), str(path))
        metas[modality] = meta
    require_same_backbone(metas["text"], str(text), metas["image"], f"{image} was embedded with")
    if metas["text"]["dim"] != metas["image"]["dim"]:
        raise MsaeError(
            f"{text}: embeddings have dim {metas['text']['dim']} but {image} has dim {metas['image']['dim']}"
        )
    shared = {key: metas["image"][key] if metas["image"][key] == metas["text"][key] else "mixed" for key in SHARED_KEYS}
    meta = {"model": metas["image"]["model"], "pretrained": metas["image"]["pretrained"], "modality": "both", **shared}
    return concatenate_stores([image, text], out, meta, tags=("image", "text"))


def mix_run(config: MixConfig) -> int:
    """`msae mix`: the stores of `config.image` and `config.text` into `config.out`."""
    return mix(config.image, config.text, config.out)
