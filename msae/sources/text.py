"""Text sources: the captions of an image source, a term list, and class names with prompt
templates. A row's prompts are combined into one embedding by `msae.embed` (several templates
per class, as CLIP's zero-shot classifier averages them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from msae.errors import MsaeError
from msae.io import read_text
from msae.sources.base import Catalogue

DEFAULT_CLASS_TEMPLATES = ("a photo of a {}.",)


def check_template(template: str) -> str:
    if template.count("{}") != 1:
        raise MsaeError(f"--template {template!r}: a template needs exactly one '{{}}' for the word")
    return template


def captions(images: Catalogue) -> Catalogue:
    """The captions of an image catalogue as text rows with the same ids (rows without a caption
    are left out and counted)."""
    if "text" not in images.columns:
        raise MsaeError(f"{images.name}: the source has no captions (no caption/text column)")
    texts = images.columns["text"]
    keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    kept = images.columns.iloc[keep].drop(columns=["path"], errors="ignore")
    notes = list(images.notes)
    if len(keep) < len(images):
        notes.append(f"{len(images) - len(keep)} item(s) without a caption left out")
    return Catalogue(
        name=images.name,
        ids=[images.ids[i] for i in keep],
        columns=kept,
        prompts=[[texts[i]] for i in keep],
        notes=notes,
    )


def read_lines(path: Path, what: str) -> tuple[list[str], int, int]:
    """Stripped non-empty lines, first occurrence kept; also the counts of empty and repeated lines."""
    lines = [line.strip() for line in read_text(path, what).splitlines()]
    words = [w for w in lines if w]
    unique = list(dict.fromkeys(words))
    return unique, len(lines) - len(words), len(words) - len(unique)


def _cleaning_notes(empty: int, repeated: int) -> list[str]:
    return [f"{empty} empty line(s) removed", f"{repeated} duplicate line(s) removed"]


def terms(path: Path, template: str | None) -> Catalogue:
    """One row per term (id = text = the term); the prompt is the term, or the template filled."""
    words, empty, repeated = read_lines(path, "term list")
    fill = check_template(template) if template else "{}"
    return Catalogue(
        name=str(path),
        ids=words,
        columns=pd.DataFrame({"text": words}),
        prompts=[[fill.format(w)] for w in words],
        notes=_cleaning_notes(empty, repeated),
    )


def classes(path: Path, templates: Sequence[str]) -> Catalogue:
    """One row per class name (id = label = the name, text = its prompts joined by ' | ')."""
    names, empty, repeated = read_lines(path, "class-name list")
    used = [check_template(t) for t in (templates or DEFAULT_CLASS_TEMPLATES)]
    prompts = [[t.format(n) for t in used] for n in names]
    return Catalogue(
        name=str(path),
        ids=names,
        columns=pd.DataFrame({"label": names, "text": [" | ".join(p) for p in prompts]}),
        prompts=prompts,
        notes=_cleaning_notes(empty, repeated),
    )
