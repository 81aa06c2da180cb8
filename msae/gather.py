"""`msae gather`: concatenate the shard stores of one split (`msae embed --shard i/n`) into one
store, in shard order, with their skipped-image lists. Every row is checked on the way (an
embedding, finite values, an id no other shard has): a bad shard fails the gather, naming it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from msae.config.embed import GatherConfig
from msae.embed import parse_shard
from msae.embed_files import concatenate_stores, read_skipped, skipped_path, write_skipped
from msae.errors import MsaeError
from msae.store import describe_backbone, read_meta, require_unique_ids, same_backbone

GATHER_KEYS = ("model", "pretrained", "modality", "dim", "dataset", "split")


def _shard_order(inputs: Sequence[Path], metas: list[dict]) -> list[int]:
    """Positions of the inputs in shard order: by their `shard` metadata when they have one
    (then all shards 0..n-1 must be present once), else the order given."""
    tags = [m.get("shard") for m in metas]
    if all(t is None for t in tags):
        return list(range(len(inputs)))
    if any(t is None for t in tags):
        plain = [str(p) for p, t in zip(inputs, tags) if t is None]
        raise MsaeError(f"gather: mixing sharded and unsharded stores ({', '.join(plain)} has no shard)")
    named = [str(t) for t in tags]
    parsed = [parse_shard(t) for t in named]
    counts = {n for _, n in parsed}
    if len(counts) != 1:
        raise MsaeError(f"gather: shards of different splittings ({', '.join(sorted(set(named)))})")
    count = counts.pop()
    present = sorted(i for i, _ in parsed)
    if present != list(range(count)):
        missing = sorted(set(range(count)) - set(present))
        repeated = sorted({i for i in present if present.count(i) > 1})
        raise MsaeError(f"gather: need shards 0..{count - 1} once each; missing {missing}, repeated {repeated}")
    return sorted(range(len(inputs)), key=lambda k: parsed[k][0])


def gather(inputs: Sequence[str | Path], out: str | Path) -> int:
    """Concatenate shard stores into one (shard order), refusing mixed backbones, modalities,
    dims or datasets and duplicate ids; their skipped lists are gathered too."""
    paths = [Path(p) for p in inputs]
    if not paths:
        raise MsaeError("gather: no input stores given")
    metas = [read_meta(p) for p in paths]
    for path, meta in zip(paths[1:], metas[1:]):
        differing = [k for k in GATHER_KEYS if meta.get(k) != metas[0].get(k)]
        if differing:
            what = describe_backbone(meta) if not same_backbone(meta, metas[0]) else ", ".join(differing)
            raise MsaeError(f"gather: {path} differs from {paths[0]} in {', '.join(differing)} ({what})")
    empty = [str(p) for p in paths if pq.ParquetFile(p).metadata.num_rows == 0]
    if empty:
        raise MsaeError(f"gather: {', '.join(empty)}: the embedding file is empty (0 rows)")
    order = _shard_order(paths, metas)
    seen: dict[str, Path] = {}
    for k in order:
        ids = pq.read_table(paths[k], columns=["id"]).column("id")
        require_unique_ids(ids, str(paths[k]))
        for item_id in ids.to_pylist():
            if item_id in seen:
                raise MsaeError(f"gather: id {item_id!r} is in both {seen[item_id]} and {paths[k]}")
            seen[item_id] = paths[k]
    skipped = [row for k in order for row in read_skipped(skipped_path(paths[k]))]  # read before writing anything
    meta = {key: value for key, value in metas[0].items() if key not in ("shard", "count")}
    rows = concatenate_stores([paths[k] for k in order], Path(out), meta)
    write_skipped(skipped_path(Path(out)), skipped)
    return rows


def gather_run(config: GatherConfig) -> int:
    """`msae gather`: the shard stores of `config.shards` into `config.out`; returns the row count."""
    return gather(config.shards, config.out)
