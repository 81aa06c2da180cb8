"""Gallery pages: one PNG grid of a latent's top-activating images, and an index.html.

Each PNG shows the top images with their activation, the captions under them where the store has
captions, and the latent's name, score and frequency in the title. index.html lists the pages by
frequency with inline thumbnails of the PNGs (relative links, no network, no script).
"""

from __future__ import annotations

import html
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msae.io import atomic_path, literal_text, write_text_atomic


@dataclass
class GalleryEntry:
    """What one gallery page shows."""

    latent: int
    name: str
    score: float
    frequency: float
    valid: bool
    images: list[Path | None]  # None: no path / unreadable
    activations: list[float]
    captions: list[str]  # empty strings where none

    @property
    def filename(self) -> str:
        return f"latent_{self.latent:06d}.png"


def load_rgb(path: Path | None) -> np.ndarray | None:
    """An image file as an RGB array; None when there is none or it cannot be decoded."""
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError):
        return None


def render_page(entry: GalleryEntry, out_path: Path, columns: int = 4) -> tuple[Path, int]:
    """Write one PNG grid; returns the path and the number of images that could not be read.
    Names and captions are drawn as written (a '$' in a term is not math)."""
    with literal_text():
        return _render_page(entry, out_path, columns)


def _render_page(entry: GalleryEntry, out_path: Path, columns: int) -> tuple[Path, int]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(1, len(entry.images))
    cols = min(columns, count)
    rows = int(np.ceil(count / cols))
    has_captions = any(entry.captions)
    cell_h = 3.4 if has_captions else 2.3  # room for three caption lines under each image
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, cell_h * rows + 0.7), squeeze=False)
    missing = 0
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(entry.images):
            ax.axis("off")
            if not entry.images:
                ax.text(0.5, 0.5, "fires on no image", ha="center", va="center", transform=ax.transAxes)
            continue
        pixels = load_rgb(entry.images[k])
        if pixels is None:
            missing += 1
            ax.text(0.5, 0.5, "image\nunavailable", ha="center", va="center", transform=ax.transAxes, color="gray")
        else:
            ax.imshow(pixels)
        ax.set_title(f"#{k + 1}  act {entry.activations[k]:.3g}", fontsize=8)
        if has_captions and entry.captions[k]:
            ax.set_xlabel("\n".join(textwrap.wrap(entry.captions[k], 38)[:3]), fontsize=7)
    status = "valid concept" if entry.valid else "not a valid concept"
    fig.suptitle(
        f"latent {entry.latent}: “{entry.name}”  score {entry.score:.3f}  "
        f"frequency {100 * entry.frequency:.2f}% of images  ({status})",
        fontsize=10,
    )
    try:
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
    return out_path, missing


def write_index(out_dir: Path, entries: Sequence[GalleryEntry], title: str) -> Path:
    """index.html: one row per page, most frequent latent first, thumbnails linking the PNGs."""
    rows = []
    for e in sorted(entries, key=lambda e: (-e.frequency, e.latent)):
        link = html.escape(f"galleries/{e.filename}")
        rows.append(
            f"<tr><td>{e.latent}</td><td>{html.escape(e.name)}</td><td>{e.score:.3f}</td>"
            f"<td>{100 * e.frequency:.2f}%</td><td>{'yes' if e.valid else 'no'}</td>"
            f'<td><a href="{link}"><img src="{link}" alt="latent {e.latent}" loading="lazy"></a></td></tr>'
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }}
img {{ max-width: 420px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(entries)} latent(s), sorted by activation frequency on the image store. Score: the name's
match (cosine for decoder naming, activation for activation naming). Click a thumbnail for the page.</p>
<table><thead><tr><th>latent</th><th>name</th><th>score</th><th>frequency</th><th>valid</th><th>top images</th></tr></thead>
<tbody>
{os.linesep.join(rows)}
</tbody></table></body></html>
"""
    return write_text_atomic(out_dir / "index.html", page)
