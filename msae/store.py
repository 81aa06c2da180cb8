"""The embedding Parquet contract shared by every stage (docs/internals.md).

One row per item: `id` (unique string), `embedding` (fixed-size list of float32, length d) and
optional `label`, `text`, `path` and ground-truth `attr_<name>` columns. The schema metadata key
`msae` holds JSON describing where the vectors came from (model, pretrained, modality, dim,
dataset, split, count, msae version), so a later stage can refuse to mix backbones.

Files are written to a temporary name and renamed; readers validate the dimension and refuse
NaN/inf rows, naming the offending ids. Large files can be streamed by record batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from msae import __version__
from msae.config.embed import StoreModality
from msae.errors import MsaeError
from msae.io import atomic_path

META_KEY = b"msae"
REQUIRED_META = ("model", "pretrained", "modality", "dim", "dataset", "split")
MODALITIES = get_args(StoreModality)
RESERVED = ("id", "embedding")


@dataclass
class EmbeddingSet:
    """Embeddings with their ids, metadata and any extra columns, aligned by row."""

    ids: np.ndarray  # object array of str, shape [N]
    embeddings: np.ndarray  # float32, shape [N, d]
    meta: dict[str, Any]
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def attributes(self) -> list[str]:
        """Names of the ground-truth attributes present (`attr_color` -> `color`)."""
        return [c[len("attr_") :] for c in self.columns.columns if c.startswith("attr_")]


def _validate_meta(meta: Mapping[str, Any], where: str) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise MsaeError(f"{where}: embedding metadata lacks {', '.join(missing)}")
    if meta["modality"] not in MODALITIES:
        raise MsaeError(f"{where}: modality must be one of {MODALITIES}, got {meta['modality']!r}")


def _nonfinite_error(where: str, ids: np.ndarray, bad_rows: np.ndarray) -> MsaeError:
    return MsaeError(f"{where}: {len(bad_rows)} row(s) contain NaN or inf, ids: {_shown_ids(ids[bad_rows].tolist())}")


def _check_finite(where: str, ids: np.ndarray, embeddings: np.ndarray) -> None:
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        raise _nonfinite_error(where, ids, np.flatnonzero(~finite))


def embedding_table(
    ids: Sequence[str] | np.ndarray,
    embeddings: np.ndarray,
    meta: Mapping[str, Any],
    columns: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
) -> pa.Table:
    """Build the Arrow table of the contract (validated), without writing it."""
    where = f"embeddings of {meta.get('dataset', '?')}/{meta.get('split', '?')}"
    emb = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if emb.ndim != 2:
        raise MsaeError(f"{where}: embeddings must be 2-D [N, d], got shape {emb.shape}")
    id_arr = np.asarray([str(i) for i in ids], dtype=object)
    if len(id_arr) != emb.shape[0]:
        raise MsaeError(f"{where}: {len(id_arr)} ids for {emb.shape[0]} embeddings")
    id_column = pa.array(id_arr.tolist(), type=pa.string())
    require_unique_ids(id_column, where)
    _check_finite(where, id_arr, emb)
    full_meta = dict(meta)
    full_meta["dim"] = int(emb.shape[1])
    full_meta["count"] = int(emb.shape[0])
    full_meta.setdefault("msae_version", __version__)
    _validate_meta(full_meta, where)
    arrays: dict[str, pa.Array] = {
        "id": id_column,
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
    }
    frame = pd.DataFrame(columns) if columns is not None else pd.DataFrame()
    for name in frame.columns:
        if name in RESERVED:
            raise MsaeError(f"{where}: extra column {name!r} clashes with a reserved column")
        if len(frame[name]) != len(id_arr):
            raise MsaeError(f"{where}: column {name!r} has {len(frame[name])} rows for {len(id_arr)} ids")
        arrays[str(name)] = pa.array(frame[name].tolist())
    table = pa.table(arrays)
    return table.replace_schema_metadata({META_KEY: json.dumps(full_meta, sort_keys=True).encode()})


def write_embeddings(
    path: str | os.PathLike[str],
    ids: Sequence[str] | np.ndarray,
    embeddings: np.ndarray,
    meta: Mapping[str, Any],
    columns: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
    row_group_size: int = 65536,
) -> Path:
    """Write an embedding store atomically. `meta` needs model, pretrained, modality, dataset,
    split; dim, count and msae_version are filled in."""
    table = embedding_table(ids, embeddings, meta, columns)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)
    return Path(path)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `msae` metadata of a store, validated; a clear error if the file is not one."""
    p = Path(path)
    if not p.exists():
        raise MsaeError(f"{p}: embedding file not found")
    try:
        schema = pq.read_schema(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MsaeError(f"{p}: not a readable Parquet file ({exc})") from exc
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise MsaeError(f"{p}: Parquet file has no 'msae' metadata; write it with msae embed")
    for col in RESERVED:
        if col not in schema.names:
            raise MsaeError(f"{p}: missing required column {col!r}")
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MsaeError(f"{p}: the 'msae' metadata is not valid JSON ({exc}); write the store with msae embed") from exc
    if not isinstance(meta, dict):
        raise MsaeError(f"{p}: the 'msae' metadata must be a JSON object, found {type(meta).__name__}")
    _validate_meta(meta, str(p))
    return meta


def _shown_ids(ids: Sequence[Any], limit: int = 10) -> str:
    more = f" (and {len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(map(str, ids[:limit])) + more


def require_unique_ids(ids: pa.Array | pa.ChunkedArray, where: str) -> None:
    """Refuse a store whose `id` column has a missing or repeated value, naming them: rows are
    joined by id (images with captions, queries, shards), so a repeat would pair wrong rows."""
    if ids.null_count:
        rows = np.flatnonzero(np.asarray(ids.is_null()))
        raise MsaeError(f"{where}: {ids.null_count} row(s) have no id (rows {_shown_ids(rows.tolist())}, 0-based)")
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist()
    raise MsaeError(f"{where}: duplicate ids ({len(repeated)} occur more than once): {_shown_ids(repeated)}")


def _to_numpy(column: pa.ChunkedArray | pa.Array, dim: int, where: str, ids: np.ndarray) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(arr.type) or arr.type.list_size != dim:
        raise MsaeError(f"{where}: column 'embedding' is {arr.type}, expected fixed_size_list<float>[{dim}]")
    if arr.null_count:
        rows = np.flatnonzero(np.asarray(arr.is_null()))
        raise MsaeError(f"{where}: {len(rows)} row(s) have no embedding (null), ids: {_shown_ids(ids[rows].tolist())}")
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    out = np.ascontiguousarray(flat.reshape(len(arr), dim).astype(np.float32, copy=False))
    # Zero-copy views of Arrow buffers are read-only; callers hand these to torch.from_numpy and
    # may normalise in place, so return an array they own.
    return out if out.flags.writeable else out.copy()


def _extra_names(schema: pa.Schema, columns: Sequence[str] | None, where: str) -> list[str]:
    available = [n for n in schema.names if n not in RESERVED]
    if columns is None:
        return available
    missing = [c for c in columns if c not in available]
    if missing:
        raise MsaeError(f"{where}: missing column(s) {', '.join(missing)} (has: {', '.join(available) or 'none'})")
    return list(columns)


def checked_rows(table: pa.Table, dim: int, where: str, check_finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 embeddings [N, dim]) of an Arrow table of the contract; MsaeError naming the
    ids of rows without an embedding or (with `check_finite`) with NaN/inf."""
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    emb = _to_numpy(table.column("embedding"), dim, where, ids)
    if check_finite:
        _check_finite(where, ids, emb)
    return ids, emb


def _embedding_set(
    table: pa.Table, names: Sequence[str], meta: dict[str, Any], where: str, check_finite: bool
) -> EmbeddingSet:
    """Turn an Arrow table of the contract (id, embedding, *names) into an EmbeddingSet."""
    ids, emb = checked_rows(table, int(meta["dim"]), where, check_finite)
    extra = table.select(list(names)).to_pandas() if names else pd.DataFrame(index=range(len(ids)))
    return EmbeddingSet(ids=ids, embeddings=emb, meta=meta, columns=extra)


def read_embeddings(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    expect_dim: int | None = None,
    check_finite: bool = True,
) -> EmbeddingSet:
    """Read a whole store. `columns=None` loads every extra column, `[]` none."""
    p = Path(path)
    meta = read_meta(p)
    dim = int(meta["dim"])
    if expect_dim is not None and dim != expect_dim:
        raise MsaeError(f"{p}: embeddings have dim {dim}, expected {expect_dim}")
    names = _extra_names(pq.read_schema(p), columns, str(p))
    table = pq.read_table(p, columns=["id", "embedding", *names])
    if table.num_rows == 0:
        raise MsaeError(f"{p}: the embedding file is empty (0 rows)")
    require_unique_ids(table.column("id"), str(p))
    return _embedding_set(table, names, meta, str(p), check_finite)


def _open(
    path: str | os.PathLike[str], columns: Sequence[str], check_ids: bool = True
) -> tuple[Path, dict[str, Any], pq.ParquetFile, list[str]]:
    """(path, checked metadata, Parquet handle, extra columns to read) of a store to stream;
    `check_ids`: read the id column once to refuse repeated or missing ids."""
    p = Path(path)
    meta = read_meta(p)
    handle = pq.ParquetFile(p)
    if check_ids:
        require_unique_ids(handle.read(columns=["id"]).column("id"), str(p))
    return p, meta, handle, _extra_names(handle.schema_arrow, columns, str(p))


def iter_embeddings(
    path: str | os.PathLike[str],
    batch_rows: int = 65536,
    columns: Sequence[str] = (),
    check_finite: bool = True,
) -> Iterator[EmbeddingSet]:
    """Stream a store in record batches of at most `batch_rows` rows, for data larger than memory."""
    p, meta, handle, names = _open(path, columns)
    for batch in handle.iter_batches(batch_size=batch_rows, columns=["id", "embedding", *names]):
        yield _embedding_set(pa.Table.from_batches([batch]), names, meta, str(p), check_finite)


def count_rows(path: str | os.PathLike[str]) -> int:
    """Number of rows, from the Parquet footer (no data read)."""
    read_meta(path)
    return int(pq.ParquetFile(path).metadata.num_rows)


def same_backbone(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> bool:
    """True when two stores were embedded by the same model and weights."""
    return (meta_a.get("model"), meta_a.get("pretrained")) == (meta_b.get("model"), meta_b.get("pretrained"))


def describe_backbone(meta: Mapping[str, Any]) -> str:
    """'model/pretrained' for error messages."""
    return f"{meta.get('model')}/{meta.get('pretrained')}"


def require_same_backbone(
    meta: Mapping[str, Any], where: str, reference: Mapping[str, Any], reference_says: str
) -> None:
    """Refuse to mix embeddings of two backbones, naming both. `reference_says` completes the
    sentence, e.g. "the SAE in DIR was trained on" or "eval.parquet was embedded with"."""
    if not same_backbone(meta, reference):
        raise MsaeError(
            f"{where} was embedded with {describe_backbone(meta)}, but {reference_says} "
            f"{describe_backbone(reference)}; both must come from the same CLIP (--model/--pretrained)"
        )


def count_row_groups(path: str | os.PathLike[str]) -> int:
    """Number of Parquet row groups (the unit a shuffled stream can visit in random order)."""
    read_meta(path)
    return int(pq.ParquetFile(path).num_row_groups)


def iter_row_groups(
    path: str | os.PathLike[str],
    order: Sequence[int],
    columns: Sequence[str] = (),
    check_finite: bool = True,
    check_ids: bool = True,
) -> Iterator[EmbeddingSet]:
    """Yield whole row groups in the given order (e.g. a seeded permutation for shuffled epochs);
    `check_ids=False` for a store already checked (a training stream re-reads it every epoch)."""
    p, meta, handle, names = _open(path, columns, check_ids)
    for index in order:
        table = handle.read_row_group(int(index), columns=["id", "embedding", *names])
        yield _embedding_set(table, names, meta, str(p), check_finite)


def resolve_image_paths(store: EmbeddingSet, store_path: Path, image_root: Path | None) -> list[Path | None]:
    """The `path` column resolved: absolute as is; relative against `image_root` (the directory
    `msae embed` ran in; default the current one), else against the store's folder."""
    if "path" not in store.columns:
        return [None] * len(store)
    root = image_root if image_root is not None else Path.cwd()
    out: list[Path | None] = []
    for value in store.columns["path"]:
        if not isinstance(value, str) or not value:
            out.append(None)
            continue
        p = Path(value)
        out.append(p if p.is_absolute() else root / p if (root / p).exists() else store_path.parent / p)
    return out
