"""The write and identity primitives every stage relies on (msae.io, msae.identity), checked
directly: atomic files, staged output folders, refused output paths, strict UTF-8 reading, and
content hashes that change exactly when the model or data does."""

from __future__ import annotations

import errno
import json
import os

import pytest
from hostile_fixtures import build, write_sae
from safetensors.torch import load_file, save_file

from msae.errors import MsaeError
from msae.identity import identity_block, require_identity, run_identity, store_identity
from msae.io import atomic_path, check_output, read_text, staged_dir, write_text_atomic

# ------------------------------------------------------------------ atomic files


def test_atomic_file_is_all_or_nothing(tmp_path):
    target = tmp_path / "a" / "b.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["b.txt"]


def test_full_disk_while_writing_names_the_file(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(MsaeError, match=r"out.bin: cannot write \(no space left on device\)"), atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not target.exists() and not list(tmp_path.iterdir())


def test_an_unrelated_error_inside_the_block_stays_itself(tmp_path):
    with pytest.raises(OSError, match="input.txt"), atomic_path(tmp_path / "out.txt"):
        open(tmp_path / "input.txt")  # an input that is missing is not a write failure  # noqa: SIM115


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(parents=True), "is a folder; give the path of a file"),
        (lambda p: p.parent.write_text("x"), "a parent of the path is a file"),
    ],
)
def test_paths_that_cannot_become_a_file_are_refused_before_any_work(tmp_path, make, message):
    target = tmp_path / "x" / "out.json"
    make(target)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(MsaeError, match=message):
        check_output(target)
    with pytest.raises(MsaeError, match=message):
        write_text_atomic(target, "{}")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------ staged output folders


def _folder(path, files):
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)


def _contents(path):
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_staged_folder_replaces_the_old_files_only_when_complete(tmp_path):
    out = tmp_path / "out"
    _folder(
        out, {"summary.json": "old", "a.png": "old", "keep.txt": "mine", "pages/p1.png": "old", "pages/p9.png": "x"}
    )
    with pytest.raises(RuntimeError), staged_dir(out, "summary.json") as stage:
        (stage / "a.png").write_text("new")
        raise RuntimeError("failed half way")
    assert _contents(out)["a.png"] == "old" and len(list(tmp_path.iterdir())) == 1  # no staging folder left
    with staged_dir(out, "summary.json", prune=("pages/*.png",)) as stage:
        _folder(stage, {"a.png": "new", "pages/p1.png": "new", "summary.json": "new"})
        assert not (out / "pages" / "p1.png").read_text() == "new"  # nothing moved yet
    assert _contents(out) == {"a.png": "new", "keep.txt": "mine", "pages/p1.png": "new", "summary.json": "new"}


def test_staged_folder_moves_the_done_file_last(tmp_path, monkeypatch):
    moved = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real(a, b)))
    with staged_dir(tmp_path / "out", "summary.json") as stage:
        _folder(stage, {"summary.json": "{}", "z.png": "", "a.csv": ""})
    assert moved[-1] == "summary.json"


def test_full_disk_in_a_staged_folder_names_the_output_not_the_staging_folder(tmp_path):
    out = tmp_path / "out"
    _folder(out, {"summary.json": "old"})
    with pytest.raises(MsaeError, match=r"^\S+/out/x.json: cannot write \(no space left on device\)") as info:
        with staged_dir(out, "summary.json") as stage, atomic_path(stage / "x.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert ".tmp" not in str(info.value) and _contents(out) == {"summary.json": "old"}


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(MsaeError, match="out: exists and is not a folder"), staged_dir(tmp_path / "out", "s.json"):
        pass


# ------------------------------------------------------------------ strict UTF-8


def test_read_text_names_the_file_and_the_first_bad_byte(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_bytes(b"red\ngreen\nbl\xffue\n")
    with pytest.raises(MsaeError, match=r"terms.txt: the term list is not UTF-8 text \(invalid start byte at byte 12"):
        read_text(path, "term list")
    with pytest.raises(MsaeError, match="nothing.txt: term list not found"):
        read_text(tmp_path / "nothing.txt", "term list")
    path.with_name("ok.txt").write_bytes("café\n".encode())
    assert read_text(path.with_name("ok.txt"), "term list") == "café\n"


# ------------------------------------------------------------------ identity


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return build(tmp_path_factory.mktemp("good"))


def test_run_identity_changes_with_the_tensors_and_the_architecture_only(good, tmp_path):
    base = run_identity(good["sae"])
    copy = tmp_path / "copy"
    write_sae(copy)  # the same seed and options: the same bytes
    assert run_identity(copy) == base
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "final": {"loss": 1.0}, "note": "moved"}))
    assert run_identity(copy) == base  # run-level notes do not change what the SAE computes
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["b_enc"][0] += 1e-6
    save_file(tensors, str(copy / "model.safetensors"))
    assert run_identity(copy) != base
    other = write_sae(tmp_path / "other", variant="topk", k=5)  # same tensors' seed, another k
    assert run_identity(other) != base


def test_require_identity_refuses_missing_and_foreign_results(good, tmp_path):
    expected = {"sae": run_identity(good["sae"])}
    block = identity_block(good["sae"], embeddings=good["images"], skipped=None)
    assert block == {"sae": expected["sae"], "embeddings": store_identity(good["images"])}
    require_identity({"identity": block}, expected, "metrics.json")  # accepted
    require_identity({"fvu": 0.1}, {}, "metrics.json")  # no model to compare with: nothing refused
    with pytest.raises(MsaeError, match="metrics.json: has no 'identity' block"):
        require_identity({"fvu": 0.1}, expected, "metrics.json")
    with pytest.raises(MsaeError, match="metrics.json: its 'identity' block does not name the sae"):
        require_identity({"identity": {"embeddings": "x"}}, expected, "metrics.json")
    other = write_sae(tmp_path / "other", n_scale=16, seed=5)
    with pytest.raises(MsaeError, match=r"metrics.json: computed from another sae \(identity [0-9a-f]{12}…\)"):
        require_identity({"identity": identity_block(other)}, expected, "metrics.json")


def test_identity_of_a_broken_run_is_refused_by_name(good, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(MsaeError, match="run/config.json: not found"):
        run_identity(run)
    (run / "config.json").write_text((good["sae"] / "config.json").read_text())
    with pytest.raises(MsaeError, match="model.safetensors is missing"):
        run_identity(run)
