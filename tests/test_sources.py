"""Every source reads a small fixture built here, with the ids, labels, captions, paths and
attributes the layout defines, and fails clearly on a missing or empty input."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from embed_fixtures import random_image, write_images
from PIL import Image

from msae.errors import MsaeError
from msae.sources import decode_image, open_source
from msae.sources.base import display_paths

# ---------------------------------------------------------------- folder


def test_folder_labels_ids_and_order(tmp_path):
    write_images(tmp_path, ["dog/b.png", "cat/z.jpg", "cat/a.png", "dog/sub/c.png"])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    cat = open_source("folder", tmp_path)
    assert cat.ids == ["cat/a.png", "cat/z.jpg", "dog/b.png", "dog/sub/c.png"]
    assert cat.columns["label"].tolist() == ["cat", "cat", "dog", "dog"]
    assert [Path(r.file) for r in cat.images] == [(tmp_path / i).resolve() for i in cat.ids]
    assert cat.modality == "image"


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(MsaeError, match="nowhere.*not found"):
        open_source("folder", tmp_path / "nowhere")
    with pytest.raises(MsaeError, match="no class sub-folders"):
        open_source("folder", tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(MsaeError, match="empty"):
        open_source("folder", tmp_path)
    with pytest.raises(MsaeError, match="train: image folder not found"):
        open_source("folder", tmp_path, split="train")


def test_folder_split_is_a_subfolder(tmp_path):
    write_images(tmp_path, ["train/cat/a.png", "val/dog/b.png"])
    assert open_source("folder", tmp_path, split="val").ids == ["dog/b.png"]
    assert open_source("folder", tmp_path, split="train").columns["label"].tolist() == ["cat"]


def test_decode_reads_the_pixels(tmp_path):
    img = random_image(np.random.default_rng(3))
    img.save(tmp_path / "x.png")
    cat_dir = tmp_path / "root" / "k"
    cat_dir.mkdir(parents=True)
    img.save(cat_dir / "x.png")
    cat = open_source("folder", tmp_path / "root")
    assert np.array_equal(np.asarray(decode_image(cat.images[0])), np.asarray(img))


# ---------------------------------------------------------------- manifest


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_columns_and_relative_paths(tmp_path, suffix):
    files = write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    frame = pd.DataFrame(
        {
            "path": ["imgs/a.png", "imgs/../imgs/b.png", "imgs/c.png"],
            "label": ["x", "y", "x"],
            "caption": ["one", "two", "three"],
            "attr_color": ["red", "blue", "red"],
            "split": ["train", "test", "train"],
            "ignored": [1, 2, 3],
        }
    )
    path = tmp_path / f"m{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    cat = open_source("manifest", path)
    assert cat.ids == ["imgs/a.png", "imgs/../imgs/b.png", "imgs/c.png"]
    assert [Path(r.file) for r in cat.images] == [f.resolve() for f in files]
    assert cat.columns["text"].tolist() == ["one", "two", "three"]
    assert cat.columns["attr_color"].tolist() == ["red", "blue", "red"]
    assert "ignored" not in cat.columns
    train = open_source("manifest", path, split="train")
    assert train.ids == ["imgs/a.png", "imgs/c.png"]
    text = open_source("manifest", path, split="train", modality="text")
    assert text.ids == train.ids and text.prompts == [["one"], ["three"]]


def test_manifest_explicit_ids_and_errors(tmp_path):
    write_images(tmp_path, ["a.png"])
    path = tmp_path / "m.csv"
    pd.DataFrame({"id": ["item-1"], "path": ["a.png"]}).to_csv(path, index=False)
    assert open_source("manifest", path).ids == ["item-1"]
    with pytest.raises(MsaeError, match="no captions"):
        open_source("manifest", path, modality="text")
    with pytest.raises(MsaeError, match="no 'split' column"):
        open_source("manifest", path, split="train")
    pd.DataFrame({"file": ["a.png"]}).to_csv(path, index=False)
    with pytest.raises(MsaeError, match="'path' column"):
        open_source("manifest", path)
    pd.DataFrame({"path": ["a.png", ""]}).to_csv(path, index=False)
    with pytest.raises(MsaeError, match="data row"):
        open_source("manifest", path)
    pd.DataFrame({"path": ["a.png", "a.png"]}).to_csv(path, index=False)
    with pytest.raises(MsaeError, match="duplicate item ids: a.png"):
        open_source("manifest", path)
    with pytest.raises(MsaeError, match="m.json.*not found"):
        open_source("manifest", tmp_path / "m.json")


@pytest.mark.parametrize("outside", ["../../../../../../../../etc/passwd", "/etc/passwd", "imgs/../../x.png"])
def test_manifest_paths_outside_its_folder_are_refused(tmp_path, outside):
    """A manifest cannot make msae read files its author did not put beside it (issue 14)."""
    files = write_images(tmp_path / "data" / "imgs", ["a.png"])
    path = tmp_path / "data" / "m.csv"
    pd.DataFrame({"path": ["imgs/a.png", outside]}).to_csv(path, index=False)
    with pytest.raises(MsaeError, match=rf"m.csv: data row 2: path '{re.escape(outside)}' is .* --allow-outside-root"):
        open_source("manifest", path)
    cat = open_source("manifest", path, allow_outside=True)  # the explicit option accepts it as written
    assert Path(cat.images[0].file) == files[0].resolve()
    assert Path(cat.images[1].file) == Path(os.path.normpath(tmp_path / "data" / outside))


def test_world_and_celeba_paths_must_stay_under_the_root(tmp_path):
    world = tmp_path / "world"
    world.mkdir()
    pd.DataFrame({"id": ["a"], "path": ["../secret.png"]}).to_parquet(world / "manifest.parquet")
    with pytest.raises(MsaeError, match="manifest.parquet: data row 1: path '../secret.png' is outside"):
        open_source("world", world)
    celeba = tmp_path / "celeba"
    (celeba / "img_align_celeba").mkdir(parents=True)
    (celeba / "list_attr_celeba.txt").write_text("1\nMale\n../../x.jpg 1\n")
    with pytest.raises(MsaeError, match="list_attr_celeba.txt: data row 1: path '../../x.jpg' is outside"):
        open_source("celeba", celeba)


@pytest.mark.parametrize("kind", ["terms", "classes"])
def test_text_lists_that_are_not_utf8_name_the_file_and_byte(tmp_path, kind):
    path = tmp_path / "list.txt"
    path.write_bytes("red\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(MsaeError, match=r"list.txt: the .* is not UTF-8 text \(invalid continuation byte at byte 7"):
        open_source(kind, path, modality="text")


def test_manifest_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("path,caption\na.png,caf\xe9 noir\n".encode("latin-1"))
    with pytest.raises(
        MsaeError, match=r"m.csv: the manifest is not UTF-8 text \(invalid continuation byte at byte 22"
    ):
        open_source("manifest", path)


# ---------------------------------------------------------------- webdataset


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def test_webdataset_shards(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [random_image(rng) for _ in range(4)]
    with tarfile.open(tmp_path / "00000.tar", "w") as tar:
        _add(tar, "000000000.jpg", _encoded(imgs[0], "JPEG"))
        _add(tar, "000000000.txt", b"a dog on grass\n")
        _add(tar, "000000000.json", json.dumps({"caption": "ignored: txt wins"}).encode())
        _add(tar, "000000001.png", _encoded(imgs[1], "PNG"))
        _add(tar, "000000001.json", json.dumps({"caption": "a cat", "url": "http://x"}).encode())
        _add(tar, "000000002.json", json.dumps({"caption": "no image"}).encode())
    with tarfile.open(tmp_path / "00001.tar", "w") as tar:
        _add(tar, "sub/000000003.png", _encoded(imgs[2], "PNG"))
        _add(tar, "sub/000000003.cls", b"7")
        _add(tar, "sub/000000004.png", _encoded(imgs[3], "PNG"))
    cat = open_source("webdataset", tmp_path)
    assert cat.ids == ["000000000", "000000001", "sub/000000003", "sub/000000004"]
    assert cat.columns["text"].tolist() == ["a dog on grass", "a cat", None, None]
    assert cat.columns["label"].tolist() == [None, None, "7", None]
    assert cat.columns["path"][1].endswith("00000.tar#000000001.png")
    assert any("without an image" in n for n in cat.notes)
    # PNG bytes read from the tar range decode to exactly the original pixels
    for k in (1, 2, 3):
        assert np.array_equal(np.asarray(decode_image(cat.images[k])), np.asarray(imgs[k]))
    assert decode_image(cat.images[0]).size == imgs[0].size
    text = open_source("webdataset", tmp_path, modality="text")
    assert text.ids == ["000000000", "000000001"]
    assert open_source("webdataset", tmp_path / "00001.tar").ids == ["sub/000000003", "sub/000000004"]


def test_webdataset_errors(tmp_path):
    with pytest.raises(MsaeError, match="not found"):
        open_source("webdataset", tmp_path / "missing")
    (tmp_path / "a.tar.gz").write_bytes(b"")
    with pytest.raises(MsaeError, match="no splits"):
        open_source("webdataset", tmp_path, split="train")
    with pytest.raises(MsaeError, match="decompress"):
        open_source("webdataset", tmp_path)
    (tmp_path / "b.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(MsaeError, match="b.tar.*not a readable"):
        open_source("webdataset", tmp_path)


# ---------------------------------------------------------------- celeba


def _celeba(root: Path, nested: bool = False) -> list[str]:
    names = ["5_o_Clock_Shadow", "Smiling", "Young"]
    files = [f"{i:06d}.jpg" for i in range(1, 6)]
    folder = root / "img_align_celeba" / ("img_align_celeba" if nested else "")
    rng = np.random.default_rng(0)
    for f in files:
        folder.mkdir(parents=True, exist_ok=True)
        random_image(rng).save(folder / f)
    values = [[1, -1, 1], [-1, -1, 1], [1, 1, -1], [-1, 1, 1], [1, 1, 1]]
    lines = [str(len(files)), " ".join(names) + " "]
    lines += [f"{f}  " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, [0, 0, 1, 2, 0])))
    return files


@pytest.mark.parametrize("nested", [False, True])
def test_celeba_attributes_and_splits(tmp_path, nested):
    _celeba(tmp_path, nested)
    cat = open_source("celeba", tmp_path)
    assert cat.ids == ["000001", "000002", "000003", "000004", "000005"]
    assert cat.columns["attr_5_o_Clock_Shadow"].tolist() == ["yes", "no", "yes", "no", "yes"]
    assert cat.columns["attr_Smiling"].tolist() == ["no", "no", "yes", "yes", "yes"]
    assert cat.columns["attr_Young"].tolist() == ["yes", "yes", "no", "yes", "yes"]
    assert all(Path(r.file).is_file() for r in cat.images)
    assert open_source("celeba", tmp_path, split="train").ids == ["000001", "000002", "000005"]
    assert open_source("celeba", tmp_path, split="val").ids == ["000003"]
    assert open_source("celeba", tmp_path, split="test").ids == ["000004"]
    with pytest.raises(MsaeError, match="train, val, test"):
        open_source("celeba", tmp_path, split="dev")


def test_celeba_errors(tmp_path):
    with pytest.raises(MsaeError, match="img_align_celeba.*not found"):
        open_source("celeba", tmp_path)
    _celeba(tmp_path)
    attr = tmp_path / "list_attr_celeba.txt"
    attr.write_text(attr.read_text().replace(" 1 -1  1", " 1 0  1", 1))
    with pytest.raises(MsaeError, match=r"list_attr_celeba.txt:3: .* 1 or -1"):
        open_source("celeba", tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    _celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(MsaeError, match="partition file not found"):
        open_source("celeba", tmp_path, split="train")


# ---------------------------------------------------------------- world manifest


def write_world(root: Path, splits: dict[str, int]) -> pd.DataFrame:
    """A world render folder in the documented format (docs/internals.md), without the renderer."""
    rows = []
    rng = np.random.default_rng(0)
    for split, count in splits.items():
        for i in range(count):
            item = f"{split}-{i:06d}"
            path = f"images/{item}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            random_image(rng, 64).save(root / path)
            color, shape = ["red", "blue"][i % 2], ["star", "circle", "square"][i % 3]
            rows.append(
                {
                    "id": item,
                    "split": split,
                    "path": path,
                    "caption": f"a small {color} {shape}",
                    "label": shape,
                    "attr_shape": shape,
                    "attr_color": color,
                    "attr_size": "small",
                    "attr_background": "plain",
                    "attr_position": "center",
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_parquet(root / "manifest.parquet")
    return frame


def test_world_manifest(tmp_path, monkeypatch):
    frame = write_world(tmp_path / "world", {"train": 4, "val": 2})
    monkeypatch.chdir(tmp_path)
    cat = open_source("world", Path("world"), split="val")
    val = frame[frame.split == "val"]
    assert cat.ids == val["id"].tolist()
    assert cat.columns["label"].tolist() == val["label"].tolist()
    assert cat.columns["text"].tolist() == val["caption"].tolist()
    assert cat.columns["path"].tolist() == [f"world/{p}" for p in val["path"]]
    for name in ("shape", "color", "size", "background", "position"):
        assert cat.columns[f"attr_{name}"].tolist() == val[f"attr_{name}"].tolist()
    assert len(open_source("world", Path("world"))) == 6
    text = open_source("world", Path("world"), split="train", modality="text")
    assert text.ids == frame[frame.split == "train"]["id"].tolist()
    assert [p[0] for p in text.prompts] == frame[frame.split == "train"]["caption"].tolist()
    assert "path" not in text.columns
    with pytest.raises(MsaeError, match="'test' has no rows.*train, val"):
        open_source("world", Path("world"), split="test")
    with pytest.raises(MsaeError, match="manifest.parquet.*not found"):
        open_source("world", tmp_path)


def test_display_path_is_relative_inside_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_paths([tmp_path / "a" / "b.png", Path("c.png")]) == ["a/b.png", "c.png"]
    assert display_paths([Path("/")]) == ["/"]


# ---------------------------------------------------------------- text sources


def test_terms_dedupe_template_and_counts(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("red\n\n star \nred\nblue\n   \nstar\n")
    cat = open_source("terms", path, modality="text", templates=["a photo of {}"])
    assert cat.ids == ["red", "star", "blue"]
    assert cat.columns["text"].tolist() == ["red", "star", "blue"]
    assert cat.prompts == [["a photo of red"], ["a photo of star"], ["a photo of blue"]]
    assert cat.notes == ["2 empty line(s) removed", "2 duplicate line(s) removed"]
    assert open_source("terms", path, modality="text").prompts[0] == ["red"]
    with pytest.raises(MsaeError, match="exactly one"):
        open_source("terms", path, modality="text", templates=["no slot"])
    with pytest.raises(MsaeError, match="at most one"):
        open_source("terms", path, modality="text", templates=["{}", "a {}"])
    with pytest.raises(MsaeError, match="--modality text"):
        open_source("terms", path)
    path.write_text("\n \n")
    with pytest.raises(MsaeError, match="empty"):
        open_source("terms", path, modality="text")


def test_classes_with_templates(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("cat\ndog\n")
    cat = open_source("classes", path, modality="text", templates=["a {}.", "a photo of a {}."])
    assert cat.ids == ["cat", "dog"]
    assert cat.columns["label"].tolist() == ["cat", "dog"]
    assert cat.prompts == [["a cat.", "a photo of a cat."], ["a dog.", "a photo of a dog."]]
    assert cat.columns["text"][0] == "a cat. | a photo of a cat."
    assert open_source("classes", path, modality="text").prompts[0] == ["a photo of a cat."]


def test_templates_refused_for_image_sources(tmp_path):
    write_images(tmp_path, ["c/a.png"])
    with pytest.raises(MsaeError, match="--template"):
        open_source("folder", tmp_path, templates=["a {}"])
