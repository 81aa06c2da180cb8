"""The CelebA layout: ROOT/img_align_celeba/*.jpg, ROOT/list_attr_celeba.txt (a count line, a
line of the 40 attribute names, then `<file> <40 values of 1/-1>`) and optionally
ROOT/list_eval_partition.txt (`<file> <0|1|2>` for train/val/test).

Attributes become `attr_<Name>` columns with the strings "yes" (1) and "no" (-1): the store keeps
ground truth as strings, and words read better than signs in reports and probes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.io import read_text
from msae.sources.base import Catalogue, catalogue_from_frame, files_under, require_dir

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLITS = {"train": "0", "val": "1", "test": "2"}
ATTR_WORDS = {"1": "yes", "-1": "no"}


def image_folder(root: Path) -> Path:
    """img_align_celeba/, or the doubly nested folder of the Kaggle download."""
    folder = require_dir(root / "img_align_celeba", "CelebA image folder")
    nested = folder / "img_align_celeba"
    return nested if nested.is_dir() else folder


def read_attributes(path: Path) -> pd.DataFrame:
    """file + one "yes"/"no" column per attribute, with errors naming the bad line."""
    lines = read_text(path, "CelebA attribute file").splitlines()
    if len(lines) < 2:
        raise MsaeError(f"{path}: expected a count line and a header line of attribute names")
    names = lines[1].split()
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise MsaeError(f"{path}:{number}: expected a file name and {len(names)} values, got {len(fields)} fields")
        try:
            rows.append([fields[0], *(ATTR_WORDS[v] for v in fields[1:])])
        except KeyError as exc:
            raise MsaeError(f"{path}:{number}: attribute values must be 1 or -1, got {exc.args[0]!r}") from exc
    return pd.DataFrame(rows, columns=["file", *(f"attr_{n}" for n in names)])


def read_partition(path: Path) -> dict[str, str]:
    """file -> split name."""
    by_code = {code: name for name, code in SPLITS.items()}
    out = {}
    for number, line in enumerate(read_text(path, "CelebA partition file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in by_code:
            raise MsaeError(f"{path}:{number}: expected '<file> <0|1|2>', got {line!r}")
        out[fields[0]] = by_code[fields[1]]
    return out


def load(root: Path, split: str | None, allow_outside: bool = False) -> Catalogue:
    """The images of `split` (train/val/test, needs the partition file; None: all), id = file stem."""
    require_dir(root, "CelebA folder")
    images = image_folder(root)
    frame = read_attributes(root / ATTR_FILE)
    if split is not None:
        if split not in SPLITS:
            raise MsaeError(f"--split {split}: CelebA splits are {', '.join(SPLITS)}")
        partition = read_partition(root / PARTITION_FILE)
        frame = frame[[partition.get(f) == split for f in frame["file"]]]
    frame = frame.assign(id=[Path(f).stem for f in frame["file"]])
    files = files_under(images, frame["file"].tolist(), str(root / ATTR_FILE), allow_outside)
    return catalogue_from_frame(str(root), frame, files)
