"""Figures of the probes: neighbour strips, concept curves, bias effect bars (matplotlib Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from msae.concepts.gallery import load_rgb  # noqa: E402
from msae.io import atomic_path, literal_text  # noqa: E402

HAS_COLOUR = "tab:green"
LACKS_COLOUR = "tab:red"


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save atomically and close (figures are many; leaking them costs memory)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def load_image(path: Any, image_root: str | os.PathLike[str] | None) -> np.ndarray | None:
    """The item's image as an array, trying the path as given, then under `image_root`; None when
    there is none or it cannot be decoded."""
    if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
        return None
    for candidate in (Path(str(path)), Path(image_root) / str(path) if image_root else None):
        if candidate is not None and candidate.is_file():
            return load_rgb(candidate)  # unreadable now: None, drawn as a blank tile with its text
    return None


def _thumbnail(image: np.ndarray | None, size: int) -> np.ndarray:
    """An RGB float tile of size x size (white when there is no image)."""
    if image is None:
        return np.ones((size, size, 3))
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size)), dtype=np.float64) / 255.0


@literal_text()  # concept names, query ids and captions drawn as written: a "$" is not mathtext
def neighbour_strip(
    path: str | os.PathLike[str],
    query_title: str,
    query_image: np.ndarray | None,
    rows: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    tile: int = 64,
) -> Path:
    """One figure: a row per setting (original, then each α), the query first, then its neighbours.

    Each neighbour dict has `image`, `fallback` (text when no image), `title` and `has` (True/False
    when ground truth says whether it has the concept, else None). Tiles are composed into one
    mosaic (one imshow): a grid of matplotlib axes was measured at ~4 s per strip."""
    from matplotlib.colors import to_rgb

    n_cols = 1 + max(len(r[1]) for r in rows)
    gap, border, head = 12, 3, 26  # pixels: between tiles, coloured frame, room for titles above
    cell_w, cell_h = tile + gap, tile + gap + head
    mosaic = np.ones((cell_h * len(rows), cell_w * n_cols, 3))
    texts: list[tuple[float, float, str, str, int]] = []

    def place(r: int, c: int, image: np.ndarray | None, frame: str | None, title: str, fallback: str) -> None:
        y0, x0 = r * cell_h + head, c * cell_w + gap // 2
        if frame is not None:
            mosaic[y0 - border : y0 + tile + border, x0 - border : x0 + tile + border] = to_rgb(frame)
        mosaic[y0 : y0 + tile, x0 : x0 + tile] = _thumbnail(image, tile)
        texts.append((x0 + tile / 2, y0 - border - 2, title, frame or "black", 6))
        if image is None:
            texts.append((x0 + tile / 2, y0 + tile / 2, fallback, "black", 5))

    for r, (label, items) in enumerate(rows):
        place(r, 0, query_image, None, "query" if r == 0 else "", query_title)
        texts.append((-4, r * cell_h + head + tile / 2, label, "black", 7))
        for c, item in enumerate(items, start=1):
            frame = None if item["has"] is None else (HAS_COLOUR if item["has"] else LACKS_COLOUR)
            place(r, c, item["image"], frame, item["title"], item["fallback"])
    width, height = mosaic.shape[1] / 72 + 1.0, mosaic.shape[0] / 72 + 0.5
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(mosaic, interpolation="nearest")
    for x, y, text, colour, size in texts:
        va = "bottom" if size == 6 else "center"
        ha = "right" if x < 0 else "center"
        ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=colour)
    ax.axis("off")
    ax.set_title(
        f"Nearest neighbours of {query_title.replace(chr(10), ' / ')}  (green frame: has the concept)", fontsize=8
    )
    return save_figure(fig, path)


@literal_text()  # concept names, query ids and captions drawn as written: a "$" is not mathtext
def concept_curves(
    path: str | os.PathLike[str], alphas: Sequence[float], curves: dict[str, dict[str, Any]], x_label: str
) -> Path:
    """Left: fraction of neighbours having the concept vs α; right: fraction keeping the query's
    other attributes (mean over them) vs α. One line per concept."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, curve in curves.items():
        line = left.plot(alphas, curve["concept_frac"], marker="o", label=f"{curve['value']} (#{curve['latent']})")[0]
        left.axhline(curve["original_concept_frac"], color=line.get_color(), linestyle=":", linewidth=1)
        keeps = np.asarray(list(curve["keep"].values()), dtype=float)
        if keeps.size:
            right.plot(alphas, keeps.mean(axis=0), marker="o", color=line.get_color(), label=key)
    left.set(
        xlabel=x_label,
        ylabel="fraction of neighbours with the concept",
        ylim=(-0.02, 1.02),
        title="Concept gained (dotted: unedited query)",
    )
    right.set(
        xlabel=x_label,
        ylabel="fraction keeping the query's other attributes",
        ylim=(-0.02, 1.02),
        title="Other attributes kept (mean over attributes)",
    )
    left.legend(fontsize=8, title="concept")
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


@literal_text()  # concept names, query ids and captions drawn as written: a "$" is not mathtext
def bias_bars(
    path: str | os.PathLike[str],
    labels: Sequence[str],
    effects: dict[str, dict[str, np.ndarray]],
    highlight: int | None,
    title: str,
) -> Path:
    """Top concepts (best first, top of the chart): mean change of p(positive) and flip rate per group."""
    n = len(labels)
    y = np.arange(n)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.35 * n + 1.6), sharey=True)
    left.barh(y, effects["all"]["dp"][:n], color="tab:blue")
    left.axvline(0, color="black", linewidth=0.8)
    left.set(xlabel="mean change of p(positive) after the intervention (all test items)", yticks=y)
    left.set_yticklabels(labels, fontsize=8)
    height = 0.8 / len(effects)
    for i, (group, metrics) in enumerate(effects.items()):
        right.barh(
            y - 0.4 + height * (i + 0.5),
            metrics["flip_rate"][:n],
            height=height,
            label=f"{group} items" if group != "anti" else "anti-correlated items",
        )
    right.set(xlabel="flip rate (share of predictions that change class)", xlim=(0, 1))
    right.legend(fontsize=8)
    if highlight is not None and highlight < n:
        left.get_yticklabels()[highlight].set_fontweight("bold")
        left.get_yticklabels()[highlight].set_color("tab:red")
    left.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
