"""WebDataset tar shards, as CC3M/LAION are distributed by img2dataset: members that share a key
(the member path up to the first dot of its file name) form one sample, e.g. `000012.jpg`,
`000012.txt`, `000012.json`. The image is read straight from its byte range in the tar, so no
extraction and no extra dependency; captions come from `.txt` or the `caption` field of `.json`,
a label from `.cls` when present. Only uncompressed tars allow that random access."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.sources.base import Catalogue, ImageRef, display_paths, is_image_name

TEXT_KEYS = ("caption", "text", "txt")


def shard_files(root: Path) -> list[Path]:
    """A single .tar, or every .tar in a folder (sorted: the order of the store)."""
    if not root.exists():
        raise MsaeError(f"{root}: WebDataset shard or folder not found")
    if root.is_file():
        shards = [root]
    else:
        shards = sorted(root.glob("*.tar"))
        if not shards:
            compressed = sorted(root.glob("*.tar.gz")) + sorted(root.glob("*.tgz"))
            hint = " (compressed shards found: decompress them, random access needs plain .tar)" if compressed else ""
            raise MsaeError(f"{root}: no .tar shards in this folder{hint}")
    return shards


def _split_key(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _caption_from_json(raw: bytes, where: str) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise MsaeError(f"{where}: invalid JSON ({exc})") from exc
    if isinstance(record, dict):
        for key in TEXT_KEYS:
            if isinstance(record.get(key), str):
                return record[key]
    return None


def _index_shard(shard: Path) -> list[dict]:
    """One dict per sample (key), in member order."""
    samples: dict[str, dict] = {}
    shown = display_paths([shard])[0]
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_key(member.name)
                sample = samples.setdefault(key, {"id": key})
                if is_image_name("x." + ext) and "image" not in sample:
                    sample["image"] = ImageRef(os.path.abspath(shard), member.offset_data, member.size)
                    sample["path"] = f"{shown}#{member.name}"
                elif ext in ("txt", "json", "cls"):
                    handle = tar.extractfile(member)
                    raw = handle.read() if handle is not None else b""
                    where = f"{shard}#{member.name}"
                    if ext == "txt":
                        sample["text"] = raw.decode("utf-8", errors="replace").strip()
                    elif ext == "cls":
                        sample["label"] = raw.decode("utf-8", errors="replace").strip()
                    elif "text" not in sample:
                        caption = _caption_from_json(raw, where)
                        if caption is not None:
                            sample["text"] = caption
    except tarfile.ReadError as exc:
        raise MsaeError(f"{shard}: not a readable uncompressed tar ({exc})") from exc
    return list(samples.values())


def load(root: Path) -> Catalogue:
    """Every sample with an image in the shard(s) under `root`; samples without one are noted."""
    shards = shard_files(root)
    every = [s for shard in shards for s in _index_shard(shard)]
    samples = [s for s in every if "image" in s]
    notes = [f"{len(shards)} shard(s)"]
    if len(every) > len(samples):
        notes.append(f"{len(every) - len(samples)} sample(s) without an image ignored")
    frame = pd.DataFrame(samples)
    columns = frame.drop(columns=["id", "image"]) if not frame.empty else frame
    columns = columns[[c for c in ("label", "text", "path") if c in columns]]
    return Catalogue(
        name=str(root),
        ids=[str(s["id"]) for s in samples],
        columns=columns.astype(object).where(columns.notna(), None),
        images=[s["image"] for s in samples],
        notes=notes,
    )
