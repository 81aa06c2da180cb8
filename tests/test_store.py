"""The embedding Parquet contract: round trip, validation, streaming, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msae import store
from msae.errors import MsaeError
from msae.io import atomic_path, write_json_atomic

META = {"model": "m", "pretrained": "p", "modality": "image", "dataset": "d", "split": "train"}


def _data(n: int = 37, d: int = 5, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"item-{i}" for i in range(n)], rng.standard_normal((n, d)).astype(np.float32)


def test_round_trip_keeps_ids_vectors_columns_and_metadata(tmp_path):
    ids, emb = _data()
    cols = {"label": [f"c{i % 3}" for i in range(len(ids))], "attr_color": ["red"] * len(ids)}
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META, cols)
    got = store.read_embeddings(path)
    assert list(got.ids) == ids
    np.testing.assert_array_equal(got.embeddings, emb)
    assert got.embeddings.dtype == np.float32 and got.dim == 5 and len(got) == 37
    assert list(got.columns["label"]) == cols["label"]
    assert got.attributes() == ["color"]
    assert got.meta["count"] == 37 and got.meta["dim"] == 5 and got.meta["modality"] == "image"
    assert "msae_version" in got.meta
    # The embedding column really is a fixed-size list of float32 (the documented contract).
    field = pq.read_schema(path).field("embedding")
    assert field.type.list_size == 5 and str(field.type.value_type) == "float"


def test_column_selection_and_streaming_match_full_read(tmp_path):
    ids, emb = _data(n=1000, d=3, seed=1)
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META, {"label": ids}, row_group_size=128)
    assert store.read_embeddings(path, columns=[]).columns.shape[1] == 0
    parts = list(store.iter_embeddings(path, batch_rows=300, columns=["label"]))
    assert max(len(p) for p in parts) <= 300
    np.testing.assert_array_equal(np.concatenate([p.embeddings for p in parts]), emb)
    assert [i for p in parts for i in p.ids] == ids
    assert [v for p in parts for v in p.columns["label"]] == ids
    assert store.count_rows(path) == 1000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_refuses_nonfinite_rows_naming_ids(tmp_path, bad):
    ids, emb = _data()
    emb[[3, 11]] = bad
    with pytest.raises(MsaeError, match="item-3, item-11"):
        store.write_embeddings(tmp_path / "e.parquet", ids, emb, META)
    assert not (tmp_path / "e.parquet").exists()


def test_read_refuses_nonfinite_rows_written_by_another_tool(tmp_path):
    ids, emb = _data()
    table = store.embedding_table(ids, emb, META)
    emb[7, 0] = np.nan
    poisoned = store.embedding_table(ids, np.nan_to_num(emb), META)  # build valid, then swap column
    import pyarrow as pa

    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    poisoned = poisoned.set_column(1, "embedding", col)
    pq.write_table(poisoned.replace_schema_metadata(table.schema.metadata), tmp_path / "bad.parquet")
    with pytest.raises(MsaeError, match="item-7"):
        store.read_embeddings(tmp_path / "bad.parquet")
    with pytest.raises(MsaeError, match="item-7"):
        list(store.iter_embeddings(tmp_path / "bad.parquet"))


def test_dimension_check_duplicates_and_missing_columns(tmp_path):
    ids, emb = _data()
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META)
    with pytest.raises(MsaeError, match="dim 5, expected 7"):
        store.read_embeddings(path, expect_dim=7)
    with pytest.raises(MsaeError, match="missing column"):
        store.read_embeddings(path, columns=["label"])
    with pytest.raises(MsaeError, match=r"duplicate ids \(1 occur more than once\): item-0"):
        store.write_embeddings(tmp_path / "d.parquet", ["item-0"] * 2, emb[:2], META)
    with pytest.raises(MsaeError, match="lacks split"):
        store.write_embeddings(tmp_path / "m.parquet", ids, emb, {k: v for k, v in META.items() if k != "split"})
    with pytest.raises(MsaeError, match="not found"):
        store.read_meta(tmp_path / "nope.parquet")


def test_plain_parquet_without_metadata_is_refused(tmp_path):
    pd.DataFrame({"id": ["a"], "embedding": [[1.0, 2.0]]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(MsaeError, match="no 'msae' metadata"):
        store.read_embeddings(tmp_path / "plain.parquet")


def test_empty_store_is_refused_on_read(tmp_path):
    path = store.write_embeddings(tmp_path / "e.parquet", [], np.zeros((0, 4), np.float32), META)
    with pytest.raises(MsaeError, match="empty"):
        store.read_embeddings(path)


def test_backbone_identity_helpers():
    assert store.same_backbone(META, dict(META, split="val"))
    assert not store.same_backbone(META, dict(META, pretrained="other"))
    assert store.describe_backbone(META) == "m/p"


def test_atomic_path_leaves_nothing_on_failure_and_keeps_old_file(tmp_path):
    target = tmp_path / "out.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "x.json", {})
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_read_arrays_are_writable_for_torch(tmp_path):
    ids, emb = _data()
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META)
    assert store.read_embeddings(path).embeddings.flags.writeable
    assert all(part.embeddings.flags.writeable for part in store.iter_embeddings(path, batch_rows=10))


def _rewritten(path, tmp_path, change):
    table = pq.read_table(path)
    out = tmp_path / "other_tool.parquet"
    pq.write_table(change(table), out)
    return out


@pytest.mark.parametrize("reader", ["read", "stream", "row_groups"])
def test_every_reader_refuses_repeated_or_missing_ids_written_by_another_tool(tmp_path, reader):
    """Rows are joined by id (captions, queries, shards): a repeat would pair the wrong rows."""
    ids, emb = _data(n=6)
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META, row_group_size=2)
    read = {
        "read": lambda p: store.read_embeddings(p),
        "stream": lambda p: list(store.iter_embeddings(p, batch_rows=2)),
        "row_groups": lambda p: list(store.iter_row_groups(p, [2, 1, 0])),
    }[reader]
    ids_repeated = _rewritten(path, tmp_path, lambda t: t.set_column(0, "id", pa.array([*ids[:5], ids[0]])))
    with pytest.raises(MsaeError, match=r"other_tool.parquet: duplicate ids \(1 occur more than once\): item-0"):
        read(ids_repeated)
    ids_missing = _rewritten(path, tmp_path, lambda t: t.set_column(0, "id", pa.array([*ids[:4], None, ids[5]])))
    with pytest.raises(MsaeError, match=r"other_tool.parquet: 1 row\(s\) have no id \(rows 4, 0-based\)"):
        read(ids_missing)


def test_null_embeddings_and_broken_metadata_are_refused_by_name(tmp_path):
    ids, emb = _data(n=4, d=3)
    path = store.write_embeddings(tmp_path / "e.parquet", ids, emb, META)

    def null_row(table):
        rows = table.column("embedding").to_pylist()
        rows[2] = None
        return table.set_column(1, "embedding", pa.array(rows, type=table.schema.field("embedding").type))

    with pytest.raises(MsaeError, match=r"1 row\(s\) have no embedding \(null\), ids: item-2"):
        store.read_embeddings(_rewritten(path, tmp_path, null_row))
    for raw, message in (
        (b"{oops", "metadata is not valid JSON"),
        (b'"text"', "metadata must be a JSON object, found str"),
    ):
        broken = _rewritten(path, tmp_path, lambda t, raw=raw: t.replace_schema_metadata({b"msae": raw}))
        with pytest.raises(MsaeError, match=f"other_tool.parquet: the 'msae' {message}"):
            store.read_meta(broken)
