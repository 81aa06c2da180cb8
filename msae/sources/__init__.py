"""Where images and texts come from. `open_source` turns a `--source` kind and a `--root` into a
`Catalogue`; each kind lives in its own module."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from msae.config.embed import ImageSource, TextSource
from msae.errors import MsaeError
from msae.sources import celeba, folder, manifest, text, webdataset, world
from msae.sources.base import Catalogue, ImageRef, decode_image

IMAGE_SOURCES: tuple[str, ...] = get_args(ImageSource)
TEXT_SOURCES: tuple[str, ...] = get_args(TextSource)
SOURCES = IMAGE_SOURCES + TEXT_SOURCES

__all__ = ["Catalogue", "ImageRef", "decode_image", "open_source", "SOURCES", "IMAGE_SOURCES", "TEXT_SOURCES"]


def _image_catalogue(kind: str, root: Path, split: str | None, allow_outside: bool) -> Catalogue:
    if kind == "world":
        return world.load(root, split, allow_outside)
    if kind == "manifest":
        return manifest.load(root, split, allow_outside)
    if kind == "celeba":
        return celeba.load(root, split, allow_outside)
    if kind == "folder":  # ImageNet layout: ROOT/<split>/<class>/<image>
        return folder.load(root / split if split is not None else root)
    if split is not None:
        raise MsaeError(f"--split {split}: the {kind} source has no splits (point --root at the split's folder)")
    return webdataset.load(root)


def open_source(
    kind: str,
    root: str | Path,
    *,
    split: str | None = None,
    modality: str = "image",
    templates: Sequence[str] = (),
    allow_outside: bool = False,
) -> Catalogue:
    """The catalogue of one source. Image sources give images, or their captions with
    `modality="text"`; `terms` takes at most one template, `classes` any number. Image paths a
    table lists must lie under its folder unless `allow_outside` (`--allow-outside-root`)."""
    root = Path(root)
    if kind in TEXT_SOURCES:
        if modality != "text":
            raise MsaeError(f"--source {kind} is a text source: use --modality text")
        if split is not None:
            raise MsaeError(f"--split {split}: the {kind} source has no splits")
        if kind == "terms":
            if len(templates) > 1:
                raise MsaeError("--source terms takes at most one --template")
            return text.terms(root, templates[0] if templates else None)
        return text.classes(root, templates)
    if kind not in IMAGE_SOURCES:
        raise MsaeError(f"--source {kind}: unknown source (choose from {', '.join(SOURCES)})")
    if templates:
        raise MsaeError(f"--template applies to the terms and classes sources, not to {kind}")
    images = _image_catalogue(kind, root, split, allow_outside)
    if modality == "image":
        return images
    if modality == "text":
        return text.captions(images)
    raise MsaeError(f"--modality {modality}: choose image or text")
