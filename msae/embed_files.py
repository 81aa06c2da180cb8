"""The files of `msae embed` and `msae gather` beside the store: the resumable chunks in
`OUT.parts/`, the list of skipped images `OUT.skipped.csv`, and the final store assembled from
chunks or shards (docs/internals.md, "Embedding store").

A chunk is `chunk-<c>.parquet` (when it has rows) then its done marker `chunk-<c>.json` (row count
and skipped items), each written atomically; a marker that cannot be read, or whose data file is
missing, counts as not done, so a damaged folder costs a recomputation, never a wrong store.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from msae import __version__
from msae.errors import MsaeError
from msae.io import atomic_path, read_json_object, read_text, write_text_atomic
from msae.sources import Catalogue
from msae.store import META_KEY, checked_rows, read_meta, write_embeddings

SKIPPED_COLUMNS = ("id", "path", "error")
TAG_COLUMN = "modality"  # a mixed store's column: which input (modality) each row came from
WRITE_ROWS = 65536  # rows per written batch (and row group)
PLAN_FILE = "plan.json"


def parts_dir(out: Path) -> Path:
    """Sidecar folder of finished chunks, next to the output."""
    return out.with_name(out.name + ".parts")


def skipped_path(out: Path) -> Path:
    """Sidecar list of skipped images: OUT with suffix .skipped.csv."""
    return out.with_suffix(".skipped.csv")


def _read_json(path: Path) -> dict | None:
    """A JSON object file of the parts folder, or None when it is absent or damaged."""
    try:
        return read_json_object(path)
    except MsaeError:
        return None


class Parts:
    """The OUT.parts/ folder of one job (identified by `fingerprint`). Nothing is written until the
    first chunk is: a job refused before it embeds anything (a bad checkpoint, say) leaves no folder,
    and a folder of another job is replaced only then."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = folder, fingerprint
        self.ours = (_read_json(folder / PLAN_FILE) or {}).get("fingerprint") == fingerprint

    def _claim(self) -> None:
        if self.ours:
            return
        if self.folder.exists():
            print(f"msae embed: {self.folder} is from a different job; starting afresh", file=sys.stderr)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / PLAN_FILE, json.dumps({"fingerprint": self.fingerprint}) + "\n")
        self.ours = True

    def data(self, chunk: int) -> Path:
        return self.folder / f"chunk-{chunk:06d}.parquet"

    def marker(self, chunk: int) -> Path:
        return self.folder / f"chunk-{chunk:06d}.json"

    def done(self, chunk: int) -> dict | None:
        """The marker of a finished chunk (rows, skipped), or None when it must be (re)done."""
        marker = _read_json(self.marker(chunk)) if self.ours else None
        if marker is None or not isinstance(marker.get("rows"), int) or not isinstance(marker.get("skipped"), list):
            return None
        if marker["rows"] > 0 and not self.data(chunk).is_file():
            return None
        return marker

    def write(
        self,
        chunk: int,
        catalogue: Catalogue,
        rows: list[int],
        vectors: np.ndarray,
        skipped: list[list[str]],
        meta: dict,
    ) -> None:
        self._claim()
        if rows:  # ascending: the loader keeps the catalogue's order
            write_embeddings(
                self.data(chunk),
                [catalogue.ids[i] for i in rows],
                vectors,
                meta,
                catalogue.columns.iloc[rows] if len(catalogue.columns.columns) else None,
            )
        write_text_atomic(self.marker(chunk), json.dumps({"rows": len(rows), "skipped": skipped}) + "\n")


def write_skipped(path: Path, skipped: list[list[str]]) -> None:
    """The sidecar list of skipped images (every one of them), or no file when none was skipped."""
    if not skipped:
        path.unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SKIPPED_COLUMNS)
    writer.writerows(skipped)
    write_text_atomic(path, buffer.getvalue())


def read_skipped(path: Path) -> list[list[str]]:
    """The rows of a skipped list (none when the file is absent)."""
    if not path.exists():
        return []
    return list(csv.reader(io.StringIO(read_text(path, "skipped-image list"))))[1:]


def _in_order(inputs: Sequence[Path], batch_rows: int) -> Iterator[list[tuple[Path, pa.Table]]]:
    for path in inputs:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield [(path, pa.Table.from_batches([batch]))]


def _interleaved(
    inputs: Sequence[Path], counts: Sequence[int], batch_rows: int
) -> Iterator[list[tuple[Path, pa.Table]]]:
    """Every input in the same number of batches (sizes in proportion to its rows), one of each
    written together: each row group then holds rows of every input."""
    writes = max(1, math.ceil(sum(counts) / batch_rows))
    streams = [
        (pa.Table.from_batches([b]) for b in pq.ParquetFile(p).iter_batches(batch_size=max(1, math.ceil(c / writes))))
        for p, c in zip(inputs, counts)
    ]
    for tables in itertools.zip_longest(*streams):
        yield [(path, table) for path, table in zip(inputs, tables) if table is not None]


def concatenate_stores(
    inputs: Sequence[Path], out: Path, meta: dict[str, Any], tags: Sequence[str] | None = None
) -> int:
    """Stream stores into one (atomically) with `meta` as its metadata (dim, count and
    msae_version filled in). Memory stays at a few record batches. Every batch is checked on the
    way: a row without an embedding or with NaN/inf fails the whole output, naming the input file
    and the ids. Without `tags` the inputs follow each other in the given order; with one tag per
    input they are interleaved in proportion to their sizes (so a streamed, shuffled reader sees
    all of them in every row group), each id becomes `<tag>:<id>` and the column TAG_COLUMN holds
    the row's tag."""
    schemas = [pq.read_schema(p).remove_metadata() for p in inputs]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise MsaeError(f"{out}: the inputs' columns do not agree ({exc})") from exc
    if tags is not None:
        if TAG_COLUMN in schema.names:
            raise MsaeError(f"{out}: an input already has a {TAG_COLUMN!r} column (is it a mixed store?)")
        schema = schema.append(pa.field(TAG_COLUMN, pa.string()))
    dim = schema.field("embedding").type.list_size
    counts = [pq.ParquetFile(p).metadata.num_rows for p in inputs]
    full = {**meta, "dim": int(dim), "count": int(sum(counts)), "msae_version": meta.get("msae_version", __version__)}
    schema = schema.with_metadata({META_KEY: json.dumps(full, sort_keys=True).encode()})
    tag_of = dict(zip(inputs, tags or ()))
    batches = _in_order(inputs, WRITE_ROWS) if tags is None else _interleaved(inputs, counts, WRITE_ROWS)
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for parts in batches:
                tables = [_conformed(table, schema, str(path), int(dim), tag_of.get(path)) for path, table in parts]
                writer.write_table(pa.concat_tables(tables))
    read_meta(out)
    return sum(counts)


def _conformed(table: pa.Table, schema: pa.Schema, where: str, dim: int, tag: str | None) -> pa.Table:
    """A checked input batch in the output's schema (missing columns null; tagged when `tag`)."""
    checked_rows(table, dim, where)
    if tag is not None:
        ids = pc.binary_join_element_wise(tag, table.column("id"), ":")
        table = table.set_column(table.schema.get_field_index("id"), "id", ids)
        table = table.append_column(TAG_COLUMN, pa.array([tag] * table.num_rows, pa.string()))
    for name in schema.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)
