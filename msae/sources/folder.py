"""An image folder with one sub-folder per class (torchvision's ImageFolder layout): the label
is the sub-folder name, the id the image's path relative to the root (unique by construction)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.sources.base import Catalogue, catalogue_from_frame, is_image_name, require_dir


def _images_under(folder: Path) -> list[Path]:
    """Image files below `folder` in sorted path order, listed without a stat per file."""
    found: list[Path] = []
    for parent, subdirs, names in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found.extend(Path(parent, n) for n in names if is_image_name(n))
    return sorted(found)


def load(root: Path) -> Catalogue:
    """Every image under ROOT/<class>/ (nested folders included), sorted for a stable order."""
    require_dir(root, "image folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise MsaeError(f"{root}: no class sub-folders (expected ROOT/<class>/<image>)")
    files = [f for c in classes for f in _images_under(c)]
    frame = pd.DataFrame(
        {
            "id": [f.relative_to(root).as_posix() for f in files],
            "label": [f.relative_to(root).parts[0] for f in files],
        }
    )
    return catalogue_from_frame(str(root), frame, files)
