"""`msae embed` / `msae gather` end to end on tiny fixtures: vectors equal open_clip's, bad images
are skipped and listed (or fail the run), shards gather to the unsharded store, and an
interrupted run resumes to identical rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from embed_fixtures import (
    reference_image_embeddings,
    reference_text_embeddings,
    save_random_world_clip,
    write_images,
    write_truncated_png,
)

from msae import embed as E
from msae import embed_files as F
from msae.backbone import combine_prompts, load_backbone
from msae.cli import main
from msae.errors import MsaeError
from msae.gather import gather
from msae.sources import open_source
from msae.store import read_embeddings, read_meta, write_embeddings

NAMES = [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(5)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_world_clip(tmp_path_factory.mktemp("ckpt") / "world.safetensors", seed=2)


@pytest.fixture(scope="module")
def backbone(checkpoint):
    return load_backbone("msae-world", str(checkpoint), device="cpu")


@pytest.fixture
def images(tmp_path):
    files = write_images(tmp_path / "imgs", NAMES)
    return tmp_path / "imgs", files


def run_embed(catalogue, out, checkpoint, backbone, **kw):
    kw.setdefault("workers", 0)
    return E.embed_catalogue(
        catalogue,
        out,
        model="msae-world",
        pretrained=str(checkpoint),
        dataset="toy",
        split="all",
        backbone=backbone,
        **kw,
    )


def test_vectors_equal_open_clip_and_store_contract(images, checkpoint, backbone, tmp_path):
    root, files = images
    out = tmp_path / "out" / "emb.parquet"
    summary = run_embed(open_source("folder", root), out, checkpoint, backbone, batch_size=4, chunk_rows=6, workers=1)
    store = read_embeddings(out)
    assert summary.rows == 10 and summary.skipped == 0
    assert store.ids.tolist() == NAMES
    np.testing.assert_allclose(store.embeddings, reference_image_embeddings(checkpoint, files), rtol=1e-4, atol=1e-5)
    assert store.columns["label"].tolist() == [n.split("/")[0] for n in NAMES]
    assert {k: store.meta[k] for k in ("model", "pretrained", "modality", "dim", "dataset", "split", "count")} == {
        "model": "msae-world",
        "pretrained": str(checkpoint),
        "modality": "image",
        "dim": 128,
        "dataset": "toy",
        "split": "all",
        "count": 10,
    }
    assert not E.parts_dir(out).exists() and not E.skipped_path(out).exists()
    assert [p.name for p in out.parent.iterdir()] == ["emb.parquet"]


def test_text_sources_equal_open_clip(tmp_path, checkpoint, backbone):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("red\nstar\nred\n\nblue\n")
    out = tmp_path / "vocab.parquet"
    run_embed(
        open_source("terms", vocab, modality="text", templates=["a {} thing"]), out, checkpoint, backbone, batch_size=2
    )
    store = read_embeddings(out)
    assert store.ids.tolist() == ["red", "star", "blue"] and store.meta["modality"] == "text"
    expected = reference_text_embeddings(checkpoint, ["a red thing", "a star thing", "a blue thing"])
    np.testing.assert_allclose(store.embeddings, expected, rtol=1e-4, atol=1e-5)

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    templates = ["a {}.", "a photo of a {}.", "a drawing of a {}."]
    out = tmp_path / "classes.parquet"
    run_embed(
        open_source("classes", classes, modality="text", templates=templates), out, checkpoint, backbone, batch_size=4
    )
    store = read_embeddings(out)
    flat = reference_text_embeddings(checkpoint, [t.format(c) for c in ("cat", "dog") for t in templates])
    np.testing.assert_allclose(store.embeddings, combine_prompts(flat, [3, 3]), rtol=1e-4, atol=1e-5)
    assert store.columns["label"].tolist() == ["cat", "dog"]


def test_captions_share_ids_with_images(tmp_path, checkpoint, backbone):
    files = write_images(tmp_path, ["a.png", "b.png", "c.png"])
    pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "caption": ["red star", "", "blue circle"]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    cat = open_source("manifest", tmp_path / "m.csv", modality="text")
    run_embed(cat, tmp_path / "t.parquet", checkpoint, backbone)
    store = read_embeddings(tmp_path / "t.parquet")
    assert store.ids.tolist() == ["a.png", "c.png"]
    np.testing.assert_allclose(
        store.embeddings, reference_text_embeddings(checkpoint, ["red star", "blue circle"]), rtol=1e-4, atol=1e-5
    )
    assert files


def _with_bad(root: Path) -> None:
    write_truncated_png(root / "dog" / "zz_truncated.png")
    (root / "cat" / "zz_garbage.jpg").write_bytes(b"\x00garbage")


def test_bad_images_skipped_and_listed(images, checkpoint, backbone, tmp_path):
    root, files = images
    _with_bad(root)
    out = tmp_path / "emb.parquet"
    summary = run_embed(
        open_source("folder", root), out, checkpoint, backbone, batch_size=3, chunk_rows=5, max_bad_fraction=0.2
    )
    store = read_embeddings(out)
    assert summary.skipped == 2 and store.ids.tolist() == NAMES
    np.testing.assert_allclose(store.embeddings, reference_image_embeddings(checkpoint, files), rtol=1e-4, atol=1e-5)
    with open(E.skipped_path(out), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["cat/zz_garbage.jpg", "dog/zz_truncated.png"]
    assert all(r["path"].endswith(r["id"]) and r["error"] for r in rows)
    assert "truncated" in rows[1]["error"]


def test_too_many_bad_images_fail_without_output(images, checkpoint, backbone, tmp_path):
    root, _ = images
    _with_bad(root)  # 2 of 12 = 16.7%, one in the first chunk (cat/) and one in the last (dog/)
    out = tmp_path / "emb.parquet"
    with pytest.raises(
        MsaeError, match=r"2 of 12 images are unreadable, more than --max-bad-fraction 0.1 allows \(1\)"
    ):
        run_embed(
            open_source("folder", root), out, checkpoint, backbone, batch_size=3, chunk_rows=5, max_bad_fraction=0.1
        )
    assert not out.exists() and not E.skipped_path(out).exists()  # no final file, not even the sidecar
    listed = E.parts_dir(out) / E.skipped_path(out).name
    assert [row[0] for row in F.read_skipped(listed)] == ["cat/zz_garbage.jpg", "dog/zz_truncated.png"]  # every one
    # the chunks were kept: a laxer limit accepts them without embedding again
    summary = run_embed(
        open_source("folder", root), out, checkpoint, backbone, batch_size=3, chunk_rows=5, max_bad_fraction=0.167
    )
    assert summary.resumed_chunks == 3 and summary.rows == 10 and summary.skipped == 2
    assert len(F.read_skipped(E.skipped_path(out))) == 2 and not E.parts_dir(out).exists()
    # the default 1% threshold refuses even one bad image among 11
    (root / "dog" / "zz_truncated.png").unlink()
    other = tmp_path / "other.parquet"
    with pytest.raises(MsaeError, match="1 of 11 images are unreadable"):
        run_embed(open_source("folder", root), other, checkpoint, backbone)
    assert not other.exists()


def test_damaged_parts_are_recomputed_not_trusted(tmp_path):
    folder = E.parts_dir(tmp_path / "emb.parquet")
    folder.mkdir()
    (folder / "plan.json").write_text('{"fingerprint": "job"}')
    parts = F.Parts(folder, "job")
    parts.marker(0).write_text("{not json")  # a damaged marker
    parts.marker(1).write_text('{"rows": 4, "skipped": []}')  # a marker whose data file is gone
    parts.marker(2).write_text('{"rows": 0, "skipped": [["a", "a.png", "bad"]]}')  # a chunk of bad images only
    assert (
        parts.done(0) is None
        and parts.done(1) is None
        and parts.done(2) == {"rows": 0, "skipped": [["a", "a.png", "bad"]]}
    )
    (folder / "plan.json").write_text("garbage")  # an unreadable plan: nothing in the folder is trusted
    assert F.Parts(folder, "job").done(2) is None
    assert F.Parts(folder, "another job").done(2) is None and parts.marker(2).exists()  # replaced only on a write


def test_shards_gather_to_the_unsharded_store(images, checkpoint, backbone, tmp_path):
    root, _ = images
    _with_bad(root)  # rows 5 and 11 of 12: the shards' skipped lists must gather too
    cat = open_source("folder", root)
    whole = tmp_path / "whole.parquet"
    run_embed(cat, whole, checkpoint, backbone, batch_size=4, max_bad_fraction=0.5)
    shards = []
    for i in (2, 0, 1):  # given out of order: gather sorts by the shard metadata
        path = tmp_path / f"shard{i}.parquet"
        run_embed(cat, path, checkpoint, backbone, batch_size=2, chunk_rows=2, shard=(i, 3), max_bad_fraction=0.5)
        assert read_meta(path)["shard"] == f"{i}/3"
        shards.append(path)
    assert [len(read_embeddings(p)) for p in sorted(shards)] == [4, 3, 3]
    gathered = tmp_path / "gathered.parquet"
    assert gather(shards, gathered) == 10
    assert E.skipped_path(gathered).read_text() == E.skipped_path(whole).read_text()
    a, b = read_embeddings(whole), read_embeddings(gathered)
    assert a.ids.tolist() == b.ids.tolist()
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-4, atol=1e-5)
    pd.testing.assert_frame_equal(a.columns, b.columns)
    assert "shard" not in b.meta and b.meta["count"] == 10

    with pytest.raises(MsaeError, match=r"missing \[1\]"):
        gather([shards[0], shards[1]], tmp_path / "x.parquet")
    with pytest.raises(MsaeError, match="repeated"):
        gather([shards[0], shards[1], shards[1]], tmp_path / "x.parquet")
    with pytest.raises(MsaeError, match="id 'cat/0.png' is in both"):
        gather([whole, gathered], tmp_path / "x.parquet")
    other = tmp_path / "other.parquet"
    store = read_embeddings(whole)
    write_embeddings(other, ["new"], store.embeddings[:1], {**store.meta, "pretrained": "openai"})
    with pytest.raises(MsaeError, match="differs .* in pretrained"):
        gather([whole, other], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_shard_parsing_and_bounds():
    assert E.parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(MsaeError, match="--shard"):
            E.parse_shard(bad)
    for total in (0, 1, 7, 10, 101):
        for count in (1, 3, 8):
            bounds = [E.shard_bounds(total, i, count) for i in range(count)]
            covered = [k for a, b in bounds for k in range(a, b)]
            assert covered == list(range(total))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


class _Interrupt(Exception):
    pass


def test_resume_after_interruption(images, checkpoint, backbone, tmp_path, monkeypatch):
    root, _ = images
    _with_bad(root)
    cat = open_source("folder", root)
    clean = tmp_path / "clean.parquet"
    run_embed(cat, clean, checkpoint, backbone, batch_size=2, chunk_rows=3, max_bad_fraction=0.5)

    out = tmp_path / "resumed.parquet"
    original = F.Parts.write
    written = []

    def write_then_die(self, chunk, *args, **kwargs):
        if len(written) == 2:
            raise _Interrupt
        original(self, chunk, *args, **kwargs)
        written.append(chunk)

    monkeypatch.setattr(F.Parts, "write", write_then_die)
    with pytest.raises(_Interrupt):
        run_embed(cat, out, checkpoint, backbone, batch_size=2, chunk_rows=3, max_bad_fraction=0.5)
    assert not out.exists()
    assert sorted(p.name for p in E.parts_dir(out).glob("chunk-*.json")) == ["chunk-000000.json", "chunk-000001.json"]

    monkeypatch.setattr(F.Parts, "write", original)
    summary = run_embed(cat, out, checkpoint, backbone, batch_size=2, chunk_rows=3, max_bad_fraction=0.5)
    assert summary.resumed_chunks == 2 and summary.skipped == 2
    a, b = read_embeddings(clean), read_embeddings(out)
    assert b.ids.tolist() == a.ids.tolist() and len(set(b.ids)) == len(b.ids) == 10
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    pd.testing.assert_frame_equal(a.columns, b.columns)
    assert E.skipped_path(out).read_text() == E.skipped_path(clean).read_text()
    assert not E.parts_dir(out).exists()


def test_parts_of_another_job_are_discarded(images, checkpoint, backbone, tmp_path):
    root, _ = images
    out = tmp_path / "emb.parquet"
    parts = E.parts_dir(out)
    parts.mkdir()
    (parts / "plan.json").write_text('{"fingerprint": "stale"}')
    (parts / "chunk-000000.json").write_text('{"rows": 99, "skipped": []}')
    summary = run_embed(open_source("folder", root), out, checkpoint, backbone, chunk_rows=4)
    assert summary.resumed_chunks == 0 and summary.rows == 10
    assert not parts.exists()


def test_cli_embed_and_gather(images, checkpoint, tmp_path, monkeypatch, capsys):
    root, files = images
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    common = [
        "--source",
        "folder",
        "--root",
        str(root),
        "--model",
        "msae-world",
        "--pretrained",
        str(checkpoint),
        "--workers",
        "0",
        "--batch-size",
        "4",
    ]
    for i in range(2):
        assert main(["embed", *common, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}.parquet")]) == 0
    assert (
        main(
            [
                "gather",
                "--out",
                str(tmp_path / "all.parquet"),
                str(tmp_path / "s0.parquet"),
                str(tmp_path / "s1.parquet"),
            ]
        )
        == 0
    )
    store = read_embeddings(tmp_path / "all.parquet")
    assert store.ids.tolist() == NAMES and store.meta["dataset"] == "imgs" and store.meta["source"] == "folder"
    np.testing.assert_allclose(store.embeddings, reference_image_embeddings(checkpoint, files), rtol=1e-4, atol=1e-5)
    assert "wrote 10 rows" in capsys.readouterr().out

    assert (
        main(
            [
                "embed",
                *common[:2],
                "--root",
                str(tmp_path / "missing"),
                *common[4:],
                "--out",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )
    assert "missing: image folder not found" in capsys.readouterr().err
    bad_model = [*common[:4], "--model", "no-such-model", *common[6:], "--out", str(tmp_path / "x.parquet")]
    assert main(["embed", *bad_model]) == 2
    assert "--model no-such-model: unknown open_clip model name" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
