"""`msae embed`: run a CLIP backbone over a source and write the embedding store (docs/internals.md).

The work is cut into fixed chunks of the (sharded) catalogue. Each finished chunk is written to a
sidecar folder `OUT.parts/` before the next starts, so an interrupted run resumes where it stopped;
the final store is assembled from the chunks in order, written atomically, and only then are the
parts removed. Images are decoded by DataLoader workers in parallel with the forward pass.
Unreadable images are skipped and every one is listed in `OUT.skipped.csv`; too many of them
fail the run after all chunks are done (the list and the chunks stay in `OUT.parts/`, so a rerun
with a higher `--max-bad-fraction` accepts them at once). The files beside the store live in
`msae.embed_files`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from msae.backbone import Backbone, SplitPreprocess, batched, combine_prompts, load_backbone
from msae.config.embed import EmbedConfig
from msae.embed_files import Parts, concatenate_stores, parts_dir, skipped_path, write_skipped
from msae.errors import MsaeError
from msae.io import check_output
from msae.sources import Catalogue, ImageRef, decode_image


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise MsaeError(f"--shard {text}: expected i/n, e.g. 0/4") from exc
    if count < 1 or not 0 <= index < count:
        raise MsaeError(f"--shard {text}: need 0 <= i < n")
    return index, count


def shard_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """Contiguous slice of shard `index` of `count`: shards in order concatenate to the whole."""
    return total * index // count, total * (index + 1) // count


def default_workers() -> int:
    """Leave one core to the forward pass; a few decoders are enough to keep up."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


@dataclass
class EmbedSummary:
    out: Path
    rows: int
    skipped: int
    seconds: float
    resumed_chunks: int
    notes: list[str] = field(default_factory=list)


class _ImageItems(Dataset):
    """Decodes and preprocesses one image per index; a failure becomes an error string so one
    bad file never kills a worker."""

    def __init__(self, refs: Sequence[ImageRef], data_path: SplitPreprocess) -> None:
        self.refs = refs
        self.data_path = data_path

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.data_path.prepare(decode_image(self.refs[index])), None
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "unreadable image"
            return index, None, f"{type(exc).__name__}: {exc}"


def image_batches(
    images: Sequence[ImageRef],
    data_path: SplitPreprocess,
    batches: list[list[int]],
    workers: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches (indices, uint8 pixels or None, [(index, error)]) in the given order, decoded by
    `workers` processes (None: `default_workers()`, 0: in this process)."""
    n_workers = default_workers() if workers is None else workers
    return DataLoader(
        _ImageItems(images, data_path),
        batch_sampler=batches,
        num_workers=n_workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=4 if n_workers else None,
    )


def _collate(items: list) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, e) for i, t, e in items if t is None]
    pixels = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], pixels, bad


def _fingerprint(catalogue: Catalogue, model: str, pretrained: str, chunk_rows: int) -> str:
    """Identity of the work: resumed chunks are only reused for exactly the same job."""
    digest = hashlib.sha256()
    payload: Sequence[object] = catalogue.images if catalogue.images is not None else catalogue.prompts or []
    digest.update(json.dumps([model, pretrained, catalogue.modality, chunk_rows]).encode())
    for item_id, item in zip(catalogue.ids, payload):
        digest.update(json.dumps([item_id, str(item)]).encode())
    return digest.hexdigest()


def _encode_text_chunk(backbone: Backbone, prompts: list[list[str]], batch_size: int, bar: tqdm) -> np.ndarray:
    flat = [p for row in prompts for p in row]
    vectors = []
    for texts in batched(flat, batch_size):
        vectors.append(backbone.encode_texts(texts).numpy())
        bar.update(len(texts))
    return combine_prompts(np.concatenate(vectors), [len(row) for row in prompts])


def embed_catalogue(
    catalogue: Catalogue,
    out: str | Path,
    *,
    model: str,
    pretrained: str,
    dataset: str,
    split: str,
    batch_size: int = 256,
    workers: int | None = None,
    device: str = "auto",
    shard: tuple[int, int] = (0, 1),
    max_bad_fraction: float = 0.01,
    chunk_rows: int = 4096,
    extra_meta: dict[str, Any] | None = None,
    backbone: Backbone | None = None,
) -> EmbedSummary:
    """Embed one shard of a catalogue into the store `out`, resuming finished chunks.

    `backbone` may be passed pre-loaded (it must match model/pretrained); otherwise it is loaded
    here, after the cheap checks, so a bad source fails before a model is downloaded."""
    out = check_output(out)
    check_output(parts_dir(out), folder=True)
    started = time.perf_counter()
    if batch_size < 1 or chunk_rows < 1:
        raise MsaeError("--batch-size and the chunk size must be at least 1")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise MsaeError(f"--max-bad-fraction {max_bad_fraction}: must be within [0, 1]")
    start, stop = shard_bounds(len(catalogue), *shard)
    work = catalogue.subset(start, stop) if shard != (0, 1) else catalogue
    if len(work) == 0:
        raise MsaeError(
            f"--shard {shard[0]}/{shard[1]}: this shard of {catalogue.name} is empty ({len(catalogue)} items)"
        )
    meta: dict[str, Any] = {
        "model": model,
        "pretrained": pretrained,
        "modality": work.modality,
        "dataset": dataset,
        "split": split,
        **(extra_meta or {}),
    }
    if shard[1] > 1:
        meta["shard"] = f"{shard[0]}/{shard[1]}"
    parts = Parts(parts_dir(out), _fingerprint(work, model, pretrained, chunk_rows))
    n_chunks = math.ceil(len(work) / chunk_rows)
    finished = {c: d for c in range(n_chunks) if (d := parts.done(c)) is not None}
    skipped = [row for c in sorted(finished) for row in finished[c]["skipped"]]
    allowed = math.floor(max_bad_fraction * len(work))
    pending = [c for c in range(n_chunks) if c not in finished]
    if pending:
        backbone = backbone or load_backbone(model, pretrained, device)
        _run_chunks(work, backbone, parts, pending, chunk_rows, batch_size, workers, meta, skipped)
    if len(skipped) > allowed:  # the list goes beside the kept chunks: the final files stay as they were
        listed = parts.folder / skipped_path(out).name
        write_skipped(listed, skipped)
        raise MsaeError(
            f"{catalogue.name}: {len(skipped)} of {len(work)} images are unreadable, more than --max-bad-fraction "
            f"{max_bad_fraction:g} allows ({allowed}); every one is listed in {listed}. No output written; the "
            f"embedded chunks are kept in {parts.folder}, so a rerun with --max-bad-fraction "
            f"{math.ceil(1000 * len(skipped) / len(work)) / 1000:g} accepts them without embedding again."
        )
    chunk_files = [parts.data(c) for c in range(n_chunks) if parts.data(c).exists()]
    if not chunk_files:
        raise MsaeError(f"{catalogue.name}: no item could be embedded (all {len(work)} skipped)")
    rows = concatenate_stores(chunk_files, out, meta)
    write_skipped(skipped_path(out), skipped)
    shutil.rmtree(parts.folder)
    return EmbedSummary(out, rows, len(skipped), time.perf_counter() - started, len(finished), list(work.notes))


def _shown_path(work: Catalogue, index: int) -> str:
    if "path" in work.columns:
        return str(work.columns["path"].iloc[index])
    assert work.images is not None  # an image catalogue
    return work.images[index].file


def _run_chunks(
    work: Catalogue,
    backbone: Backbone,
    parts: Parts,
    pending: list[int],
    chunk_rows: int,
    batch_size: int,
    workers: int | None,
    meta: dict[str, Any],
    skipped: list[list[str]],
) -> None:
    """Embed the pending chunks, writing each as soon as it is complete; unreadable images are
    added to `skipped`."""
    bounds = {c: (c * chunk_rows, min(len(work), (c + 1) * chunk_rows)) for c in pending}
    total = sum(b - a for a, b in bounds.values())
    unit = "img" if work.modality == "image" else "text"
    with tqdm(total=total, desc=f"embed {Path(work.name).name}", unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:
        if work.modality == "text":
            for c in pending:
                a, b = bounds[c]
                parts.write(
                    c,
                    work,
                    list(range(a, b)),
                    _encode_text_chunk(backbone, (work.prompts or [])[a:b], batch_size, bar),
                    [],
                    meta,
                )
        else:
            _image_chunks(work, backbone, parts, bounds, chunk_rows, batch_size, workers, meta, skipped, bar)


def _image_chunks(
    work: Catalogue,
    backbone: Backbone,
    parts: Parts,
    bounds: dict[int, tuple[int, int]],
    chunk_rows: int,
    batch_size: int,
    workers: int | None,
    meta: dict[str, Any],
    skipped: list[list[str]],
    bar: tqdm,
) -> None:
    """One DataLoader over all pending chunks (workers start once); batches never straddle a
    chunk, so a chunk is complete, and written, when its last batch is embedded."""
    batches = [list(range(s, min(b, s + batch_size))) for a, b in bounds.values() for s in range(a, b, batch_size)]
    data_path = backbone.data_path
    assert work.images is not None  # an image catalogue
    loader = image_batches(work.images, data_path, batches, workers, pin_memory=backbone.device.type == "cuda")
    rows: list[int] = []
    vectors: list[np.ndarray] = []
    bad: list[list[str]] = []
    for indices, pixels, failures in loader:
        if pixels is not None:
            rows.extend(indices)
            vectors.append(backbone.encode_prepared(pixels, data_path).numpy())
        bad.extend([work.ids[i], _shown_path(work, i), error] for i, error in failures)
        bar.update(len(indices) + len(failures))
        last = max(indices + [i for i, _ in failures])
        chunk = last // chunk_rows
        if last + 1 == bounds[chunk][1]:
            stacked = np.concatenate(vectors) if vectors else np.empty((0, backbone.dim), np.float32)
            parts.write(chunk, work, rows, stacked, bad, meta)
            skipped.extend(bad)
            rows, vectors, bad = [], [], []
            if skipped:
                bar.set_postfix(skipped=len(skipped))


def embed_run(config: EmbedConfig) -> EmbedSummary:
    """`msae embed`: open the source, check the backbone and embed one shard into `config.out`."""
    from msae.backbone import check_backbone
    from msae.runtime import configure_torch, resolve_device
    from msae.sources import TEXT_SOURCES, open_source

    modality = config.modality or ("text" if config.source in TEXT_SOURCES else "image")
    shard = parse_shard(config.shard)
    check_backbone(config.model, config.pretrained)  # fail on a typo before indexing a large source
    resolve_device(config.device)
    catalogue = open_source(
        config.source,
        config.root,
        split=config.split,
        modality=modality,
        templates=list(config.template),
        allow_outside=config.allow_outside_root,
    )
    for note in catalogue.notes:
        print(f"msae embed: {catalogue.name}: {note}", file=sys.stderr)
    configure_torch()
    extra: dict[str, Any] = {"source": config.source}
    if config.template:
        extra["templates"] = list(config.template)
    return embed_catalogue(
        catalogue,
        config.out,
        model=config.model,
        pretrained=config.pretrained,
        dataset=config.dataset or config.root.resolve().stem,
        split=config.split or "all",
        batch_size=config.batch_size,
        workers=config.workers,
        device=config.device,
        shard=shard,
        max_bad_fraction=config.max_bad_fraction,
        chunk_rows=config.chunk_size,
        extra_meta=extra,
    )
