"""What every source hands to `msae embed`: a catalogue of items in a fixed order.

Image sources differ only in how they find their files and columns; decoding is shared. An image
is located by a byte range of a file (the whole file for folders and manifests, one member of a
tar shard for WebDataset), so DataLoader workers can read any item directly, in any order, with
one code path.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from msae.errors import MsaeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageRef:
    """Where the encoded bytes of one image live: `length` bytes of `file` from `offset`
    (length -1: the whole file)."""

    file: str
    offset: int = 0
    length: int = -1


@dataclass
class Catalogue:
    """One row per item, in the order the store will have.

    `columns` holds the store's optional columns (label, text, path, attr_*), aligned with `ids`.
    Image catalogues set `images`; text catalogues set `prompts`, one or more per row (several
    prompts of a row are combined into one embedding, as CLIP's zero-shot classifier does).
    """

    name: str
    ids: list[str]
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)
    images: list[ImageRef] | None = None
    prompts: list[list[str]] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = self.columns.reset_index(drop=True)
        payload = self.images if self.images is not None else self.prompts
        if payload is None or (self.images is None) == (self.prompts is None):
            raise ValueError("a catalogue holds either images or prompts")
        if len(payload) != len(self.ids) or (len(self.columns.columns) and len(self.columns) != len(self.ids)):
            raise ValueError("catalogue ids, payload and columns differ in length")
        if not self.ids:
            raise MsaeError(f"{self.name}: the source is empty (no items found)")
        dup = pd.Series(self.ids)
        dup = dup[dup.duplicated()].unique()[:10]
        if len(dup):
            raise MsaeError(f"{self.name}: duplicate item ids: {', '.join(map(str, dup))}")

    @property
    def modality(self) -> str:
        return "image" if self.images is not None else "text"

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, start: int, stop: int) -> Catalogue:
        """Rows [start, stop), e.g. one shard."""
        sl = slice(start, stop)
        return Catalogue(
            name=self.name,
            ids=self.ids[sl],
            columns=self.columns.iloc[sl],
            images=None if self.images is None else self.images[sl],
            prompts=None if self.prompts is None else self.prompts[sl],
            notes=list(self.notes),
        )


def decode_image(ref: ImageRef) -> Image.Image:
    """Read and fully decode one image as RGB (a truncated file fails here, not later)."""
    with open(ref.file, "rb") as handle:
        handle.seek(ref.offset)
        data = handle.read() if ref.length < 0 else handle.read(ref.length)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ValueError(f"not a recognised image ({len(data)} bytes)") from None
    with image:
        return image.convert("RGB")


def display_paths(files: list[Path]) -> list[str]:
    """The paths as stored in the `path` column: relative to the working directory when inside
    it (portable across machines for pipeline outputs), absolute otherwise. String operations
    only: a million files must not cost a million system calls."""
    cwd = os.getcwd() + os.sep
    absolute = [os.path.abspath(f) for f in files]
    return [Path(a[len(cwd) :]).as_posix() if a.startswith(cwd) else a for a in absolute]


def files_under(root: Path, values: list[str], where: str, allow_outside: bool = False) -> list[Path]:
    """The files named by `values` (paths as a table writes them), relative ones under `root`.

    A value that is absolute or leads out of `root` with '..' is refused, naming its data row
    (1-based), unless `allow_outside` (`--allow-outside-root`): a manifest then cannot make msae
    read files its author did not put beside it. String operations only (no system call per file);
    symbolic links inside `root` are followed as the root's owner made them."""
    base = os.path.abspath(root)
    inside = base.rstrip(os.sep) + os.sep
    files: list[Path] = []
    for row, value in enumerate(values, start=1):
        joined = os.path.normpath(os.path.join(base, value))
        if not allow_outside and not joined.startswith(inside):
            raise MsaeError(
                f"{where}: data row {row}: path {value!r} is {'absolute' if os.path.isabs(value) else 'outside'} "
                f"{base}; image paths must lie under the manifest's folder (give --allow-outside-root to accept it)"
            )
        files.append(Path(joined))
    return files


def require_dir(path: Path, what: str) -> Path:
    return _require(path, what, "folder")


def require_file(path: Path, what: str) -> Path:
    return _require(path, what, "file")


def _require(path: Path, what: str, kind: str) -> Path:
    if not path.exists():
        raise MsaeError(f"{path}: {what} not found")
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise MsaeError(f"{path}: {what} must be a {kind}")
    return path


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _as_text(values: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in values]


def catalogue_from_frame(name: str, frame: pd.DataFrame, files: list[Path]) -> Catalogue:
    """Build an image catalogue from a table with `id` and optional `label`, `caption`/`text`
    and `attr_*` columns, and the image file of each row. Label, text and attribute values are
    stored as strings (the store contract for ground truth)."""
    columns: dict[str, list[str | None]] = {}
    if "label" in frame:
        columns["label"] = _as_text(frame["label"])
    for text_col in ("caption", "text"):
        if text_col in frame:
            columns["text"] = list(_as_text(frame[text_col]))
            break
    columns["path"] = list[str | None](display_paths(files))
    for col in frame.columns:
        if str(col).startswith("attr_"):
            columns[str(col)] = _as_text(frame[col])
    return Catalogue(
        name=name,
        ids=[str(i) for i in frame["id"]],
        columns=pd.DataFrame(columns),
        images=[ImageRef(os.path.abspath(f)) for f in files],
    )


def filter_split(name: str, frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Keep the rows of one split when the table has a `split` column."""
    if split is None:
        return frame
    if "split" not in frame:
        raise MsaeError(f"{name}: --split {split} given but the table has no 'split' column")
    kept = frame[frame["split"].astype(str) == split]
    if kept.empty:
        known = ", ".join(sorted(map(str, frame["split"].unique())))
        raise MsaeError(f"{name}: split {split!r} has no rows (splits present: {known})")
    return kept
