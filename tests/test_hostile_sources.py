"""Bad-input matrix, input class "images and sources" (issue 14): broken or hostile sources ×
`msae embed` (every kind of source), term and block lists × `msae vocab`, skipped lists × `msae
gather`. Each case: exit 2, a message naming the file (and row or byte), no output created or
changed. Apart from the unreadable-images case, all are refused before a model is loaded."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from embed_fixtures import write_images, write_truncated_png
from hostile_checks import expect_refusal, old_output
from hostile_fixtures import build, run_cli

LATIN1 = "caf\xe9 noir".encode("latin-1")  # not UTF-8: byte 3 (0xe9) starts no valid sequence


def _manifest(rows: dict, name: str = "m.csv") -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        write_images(root / "data" / "imgs", ["a.png"])
        path = root / "data" / name
        pd.DataFrame(rows).to_csv(path, index=False)
        return path

    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return make


def _world_with(paths: list[str]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        folder = root / "data" / "world"
        folder.mkdir(parents=True)
        pd.DataFrame({"id": [f"w{i}" for i in range(len(paths))], "path": paths}).to_parquet(
            folder / "manifest.parquet"
        )
        return folder

    return make


def _celeba(attr_lines: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        folder = root / "data" / "celeba"
        write_images(folder / "img_align_celeba", ["000001.jpg"])
        (folder / "list_attr_celeba.txt").write_bytes(attr_lines)
        return folder

    return make


def _compressed_shards(root: Path) -> Path:
    folder = root / "data" / "shards"
    folder.mkdir(parents=True)
    with tarfile.open(folder / "000.tar.gz", "w:gz"):
        pass
    return folder


# name -> (source kind, builder of --root, extra options, regexes the message must match)
SOURCES: dict[str, tuple[str, Callable[[Path], Path], tuple[str, ...], tuple[str, ...]]] = {
    "manifest-path-escapes": (
        "manifest",
        _manifest({"path": ["imgs/a.png", "../../../../../../../../etc/passwd"]}),
        (),
        ("m.csv", r"data row 2: path '\.\./\.\./.*etc/passwd' is outside", "--allow-outside-root"),
    ),
    "manifest-path-absolute": (
        "manifest",
        _manifest({"path": ["/etc/passwd"]}),
        (),
        ("m.csv", "data row 1: path '/etc/passwd' is absolute"),
    ),
    "manifest-not-utf8": (
        "manifest",
        _bytes("m.csv", b"path,caption\nimgs/a.png," + LATIN1 + b"\n"),
        (),
        ("m.csv", "not UTF-8 text", "at byte 27"),
    ),
    "manifest-no-path-column": (
        "manifest",
        _manifest({"file": ["imgs/a.png"]}),
        (),
        ("m.csv", "needs a 'path' column"),
    ),
    "manifest-empty-path": (
        "manifest",
        _manifest({"path": ["imgs/a.png", None]}),
        (),
        ("m.csv", r"empty 'path' in data row\(s\) 2"),
    ),
    "manifest-unknown-format": (
        "manifest",
        _bytes("m.json", b"{}"),
        (),
        ("m.json", r"must be \.csv, \.tsv or \.parquet"),
    ),
    "manifest-duplicate-ids": (
        "manifest",
        _manifest({"path": ["imgs/a.png", "imgs/a.png"]}),
        (),
        ("m.csv", "duplicate item ids: imgs/a.png"),
    ),
    "manifest-unknown-split": (
        "manifest",
        _manifest({"path": ["imgs/a.png"], "split": ["train"]}),
        ("--split", "val"),
        ("m.csv", "split 'val' has no rows"),
    ),
    "terms-not-utf8": (
        "terms",
        _bytes("terms.txt", b"red\n" + LATIN1 + b"\n"),
        (),
        ("terms.txt", "not UTF-8 text", "at byte 7"),
    ),
    "terms-empty": ("terms", _bytes("terms.txt", b"\n\n"), (), ("terms.txt", "the source is empty")),
    "terms-is-a-folder": (
        "terms",
        lambda r: (r / "data" / "t").mkdir(parents=True) or r / "data" / "t",
        (),
        ("t", "must be a file"),
    ),
    "terms-template-without-slot": (
        "terms",
        _bytes("terms.txt", b"red\n"),
        ("--template", "a photo"),
        (re.escape("--template 'a photo'"), r"exactly one '\{\}'"),
    ),
    "classes-not-utf8": ("classes", _bytes("classes.txt", LATIN1), (), ("classes.txt", "not UTF-8 text", "at byte 3")),
    "world-path-escapes": (
        "world",
        _world_with(["../../secret.png"]),
        (),
        ("manifest.parquet", "data row 1: path '../../secret.png' is outside"),
    ),
    "world-manifest-not-parquet": (
        "world",
        lambda r: _bytes("world/manifest.parquet", b"not parquet")(r).parent,
        (),
        ("manifest.parquet", "not a readable Parquet file"),
    ),
    "world-missing": ("world", lambda r: r / "data" / "nowhere", (), ("nowhere", "world folder not found")),
    "celeba-not-utf8": (
        "celeba",
        _celeba(b"1\nMale\n000001.jpg " + LATIN1 + b"\n"),
        (),
        ("list_attr_celeba.txt", "not UTF-8"),
    ),
    "celeba-bad-value": (
        "celeba",
        _celeba(b"1\nMale\n000001.jpg 2\n"),
        (),
        ("list_attr_celeba.txt:3", "must be 1 or -1, got '2'"),
    ),
    "celeba-path-escapes": (
        "celeba",
        _celeba(b"1\nMale\n../../../etc/passwd 1\n"),
        (),
        ("list_attr_celeba.txt", "data row 1: path '../../../etc/passwd' is outside"),
    ),
    "webdataset-compressed": ("webdataset", _compressed_shards, (), ("shards", "compressed shards found")),
    "webdataset-not-tar": (
        "webdataset",
        _bytes("0.tar", b"not a tar at all" * 64),
        (),
        ("0.tar", "not a readable uncompressed tar"),
    ),
    "folder-without-classes": (
        "folder",
        lambda r: (r / "data" / "f").mkdir(parents=True) or r / "data" / "f",
        (),
        ("f", "no class sub-folders"),
    ),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_broken_source_is_refused_before_any_model_loads(tmp_path, name):
    kind, make, extra, patterns = SOURCES[name]
    root = make(tmp_path)
    out = old_output(tmp_path / "out" / "store.parquet")
    args = ["embed", "--source", kind, "--root", root, "--model", "msae-world", "--pretrained", "builtin"]
    args += [*extra, "--out", out, "--device", "cpu", "--workers", "0"]
    expect_refusal(tmp_path, args, patterns)


def test_manifest_outside_its_folder_is_read_when_allowed(tmp_path):
    """The explicit option accepts what the default refuses (the same manifest, exit 0)."""
    files = write_images(tmp_path / "elsewhere", ["b.png"])
    _manifest({"path": ["imgs/a.png", str(files[0])]})(tmp_path)
    args = ["embed", "--source", "manifest", "--root", tmp_path / "data" / "m.csv", "--model", "msae-world"]
    args += ["--pretrained", "builtin", "--out", tmp_path / "out.parquet", "--device", "cpu", "--workers", "0"]
    assert run_cli(args).code == 2
    answer = run_cli([*args, "--allow-outside-root"])
    assert answer.code == 0, answer.stderr[-800:]


def test_unreadable_images_beyond_the_limit_are_counted_and_all_listed(tmp_path):
    """Every unreadable image is listed (not only the first) and the message states the count;
    the final store and its sidecar are not written (the work folder keeps the chunks)."""
    files = write_images(tmp_path / "data" / "imgs", ["a.png", "b.png"])
    write_truncated_png(tmp_path / "data" / "imgs" / "c.png")
    (tmp_path / "data" / "imgs" / "d.png").write_bytes(b"\x00 not an image")
    rows = [f"imgs/{n}" for n in ("a.png", "c.png", "b.png", "d.png")]
    pd.DataFrame({"path": rows}).to_csv(tmp_path / "data" / "m.csv", index=False)
    out = old_output(tmp_path / "out" / "store.parquet")
    args = ["embed", "--source", "manifest", "--root", tmp_path / "data" / "m.csv", "--model", "msae-world"]
    args += ["--pretrained", "builtin", "--out", out, "--device", "cpu", "--workers", "0", "--chunk-size", "2"]
    patterns = ["m.csv", r"2 of 4 images are unreadable", r"every one is listed in .*store\.skipped\.csv"]
    expect_refusal(tmp_path, args, patterns, work=["out/store.parquet.parts"])
    listed = (tmp_path / "out" / "store.parquet.parts" / "store.skipped.csv").read_text()
    assert "imgs/c.png" in listed and "imgs/d.png" in listed and len(files) == 2


VOCAB_CASES = {
    "blocklist-not-utf8": (_bytes("block.txt", b"ok\n" + LATIN1), ("block.txt", "not UTF-8 text", "at byte 6")),
    "blocklist-missing": (lambda r: r / "data" / "nowhere.txt", ("nowhere.txt", "not found")),
}


@pytest.mark.parametrize("name", sorted(VOCAB_CASES))
def test_broken_vocab_input_is_refused(tmp_path, name):
    make, patterns = VOCAB_CASES[name]
    out = old_output(tmp_path / "out" / "terms.txt")
    args = ["vocab", "--out", out, "--n-common", "5", "--blocklist", make(tmp_path)]
    expect_refusal(tmp_path, args, patterns)


def test_gather_refuses_a_skipped_list_that_is_not_utf8(good, tmp_path):
    shard = tmp_path / "shard.parquet"
    shard.write_bytes(good["images"].read_bytes())
    (tmp_path / "shard.skipped.csv").write_bytes(b"id,path,error\n" + LATIN1 + b",x,y\n")
    out = old_output(tmp_path / "out" / "all.parquet")
    expect_refusal(tmp_path, ["gather", "--out", out, shard], ["shard.skipped.csv", "not UTF-8 text"])
