"""Write the browser folder: index.html + browser.js/.css, data/*.js, img/ thumbnails, figures/.

Layout (all links relative, so the folder opens from disk and can be copied alone):

    index.html, browser.js, browser.css   the page (no network, no server)
    data/index.js     window.MSAE_INDEX: runs (validity rule, chance levels) and every alive
                      latent's searchable fields
    data/images.js    window.MSAE_IMAGES: [thumbnail, caption, image id] of every image shown
    data/run-RRR-CCC.js   window.MSAE_RUNS["R.C"]: latent pages of run R, latents
                      C*1024 .. C*1024+1023, loaded when one of them is first opened
    img/              thumbnails of the images shown (only those), named by store row
    figures/          the report's Pareto plot and the probes' figures

Data files are JavaScript, not JSON, because Chromium blocks fetch() of file:// URLs but runs
<script src>. index.html is written last: it is the folder's "done" file.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from msae.errors import MsaeError
from msae.io import atomic_path, write_text_atomic
from msae.report.browser.export import RunExport, export_run
from msae.report.browser.matches import best_matches, chance_cosine
from msae.report.browser.overview import overview_html
from msae.report.collect import RunResults
from msae.store import EmbeddingSet, read_embeddings, resolve_image_paths, same_backbone

THUMB = 128  # pixels: larger images are shrunk, smaller ones copied as they are
COPY_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}
SCORE_LABELS = {"decoder": "cosine", "decoder-projection": "projection", "activation": "activation"}
PLACEHOLDER = "<!-- overview -->"
CHUNK = 1024  # latents per data file


def js_data(target: str, value: Any) -> str:
    """`target = <JSON>;` with NaN/inf refused and non-ASCII escaped (safe in any encoding)."""
    return f"{target} = {json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(',', ':'))};\n"


def _num(value: float, digits: int = 4) -> float | None:
    """A float rounded to `digits` significant digits for the data files; None for NaN."""
    value = float(value)
    return None if not math.isfinite(value) else float(f"{value:.{digits}g}")


def write_thumbnail(src: Path | None, folder: Path, stem: str) -> str | None:
    """A thumbnail of `src` in `folder` (small images copied byte for byte); its file name, or
    None when the image cannot be read (the page then shows the caption only)."""
    if src is None:
        return None
    from PIL import Image

    try:
        with Image.open(src) as img:
            if max(img.size) <= THUMB and img.format in COPY_FORMATS:
                name = stem + COPY_FORMATS[img.format]
                with atomic_path(folder / name) as tmp:
                    shutil.copyfile(src, tmp)
                return name
            img.thumbnail((THUMB, THUMB))
            alpha = img.mode in ("RGBA", "LA", "P")
            name = stem + (".png" if alpha else ".jpg")
            with atomic_path(folder / name) as tmp:
                if alpha:
                    img.save(tmp, format="PNG")
                else:
                    img.convert("RGB").save(tmp, format="JPEG", quality=85)
            return name
    except (OSError, ValueError):
        return None


def _text(value: object) -> str:
    """A string cell as text; '' for a missing one (None/NaN)."""
    return value if isinstance(value, str) else ""


def _index_columns(export: RunExport) -> dict[str, list]:
    """The searchable fields of the run's alive latents (column lists keep the file small)."""
    table = export.concepts.latents
    alive = np.flatnonzero(export.alive)
    terms = export.concepts.terms.groupby("latent")["term"].apply(list)
    return {
        "id": [int(j) for j in alive],
        "name": [str(table.at[j, "name"]) for j in alive],
        "terms": [[str(t) for t in terms.get(j, [])] for j in alive],
        "attr": [_text(table.at[j, "attribute"]) for j in alive],
        "level": [int(export.level[j]) for j in alive],
        "valid": [int(bool(table.at[j, "valid"])) for j in alive],
        "freq": [_num(table.at[j, "frequency"]) for j in alive],
    }


def _pairs(images: np.ndarray, values: np.ndarray, refs: dict[int, int]) -> list[list]:
    return [[refs[int(i)], _num(v)] for i, v in zip(images.tolist(), values.tolist()) if i >= 0]


def _latent_pages(export: RunExport, refs: dict[int, int], matches: list[tuple[int, np.ndarray, np.ndarray]]) -> dict:
    """The page data of the run's alive latents, keyed by latent id."""
    act = export.activity
    rows = export.concepts.latents.to_dict("index")
    by_latent = {int(j): group for j, group in export.concepts.terms.groupby("latent")}
    pages = {}
    for j in np.flatnonzero(export.alive).tolist():
        row, group = rows[j], by_latent.get(j)
        pages[j] = {
            "name": str(row["name"]),
            "score": _num(row["score"]),
            "margin": _num(row["margin"]),
            "freq": _num(row["frequency"]),
            "active": int(row["active_images"]),
            "attr": _text(row["attribute"]),
            "precision": _num(row["precision"]),
            "valid": bool(row["valid"]),
            "level": int(export.level[j]),
            "rank": int(act.best_rank[j]),
            "terms": [] if group is None else [[str(t), _num(s)] for t, s in zip(group["term"], group["score"])],
            "checks": [_num(c.value[j]) for c in export.checks],
            "passed": [bool(c.passed[j]) for c in export.checks],
            "top": _pairs(act.top_images[j], act.top_values[j], refs),
            "random": _pairs(act.random_images[j], act.random_values[j], refs),
            "hist": act.histogram[j].tolist(),
            "hmax": _num(act.max_value[j]),
            "matches": [[r, [[int(i), _num(c, 3)] for i, c in zip(idx[j], cos[j])]] for r, idx, cos in matches],
        }
    return pages


def _write_chunks(out_dir: Path, r: int, pages: dict[int, dict]) -> dict[str, Path]:
    """data/run-RRR-CCC.js: latents [C*CHUNK, (C+1)*CHUNK) of run R, so opening one latent page
    loads at most CHUNK latents whatever the dictionary size."""
    files = {}
    for chunk in sorted({j // CHUNK for j in pages}):
        name = f"data/run-{r:03d}-{chunk:03d}.js"
        part = {str(j): page for j, page in pages.items() if j // CHUNK == chunk}
        files[name] = write_text_atomic(out_dir / name, js_data(f'window.MSAE_RUNS["{r}.{chunk}"]', part))
    return files


def comparable(a: RunExport, b: RunExport) -> bool:
    """Decoder atoms of two runs compare when they live in the same embedding space."""
    return a.decoder.shape[1] == b.decoder.shape[1] and same_backbone(a.backbone, b.backbone)


def _static(name: str) -> str:
    return resources.files("msae.report.browser").joinpath("static", name).read_text(encoding="utf-8")


def _remove_stale(folder: Path, pattern: str, keep: set[Path]) -> None:
    """Delete files of an earlier, larger build that this build did not write."""
    if folder.is_dir():
        for path in folder.glob(pattern):
            if path not in keep:
                path.unlink()


def _write_images(
    out_dir: Path, exported: Sequence[RunExport], store: EmbeddingSet, images: Path, image_root: Path | None
) -> tuple[dict[int, int], dict[str, Path]]:
    """Thumbnails and data/images.js for every image a latent page shows; returns store row ->
    index into MSAE_IMAGES, and the files written."""
    shown = sorted(
        {
            int(i)
            for e in exported
            for arr in (e.activity.top_images, e.activity.random_images)
            for i in arr[e.alive].ravel()
            if i >= 0
        }
    )
    paths = resolve_image_paths(store, images, image_root)
    captions = store.columns.get("text")
    files: dict[str, Path] = {}
    table = []
    for row in tqdm(shown, desc="browser: thumbnails", unit="img", leave=False, mininterval=1):
        name = write_thumbnail(paths[row], out_dir / "img", f"{row:07d}")
        if name is not None:
            files[f"img/{name}"] = out_dir / "img" / name
        caption = captions.iloc[row] if captions is not None else None
        table.append([f"img/{name}" if name else "", _text(caption), str(store.ids[row])])
    _remove_stale(out_dir / "img", "*", set(files.values()))
    files["data/images.js"] = write_text_atomic(out_dir / "data" / "images.js", js_data("window.MSAE_IMAGES", table))
    return {row: k for k, row in enumerate(shown)}, files


def _run_entry(run: RunResults, export: RunExport, r: int, chance: list[tuple[int, float]]) -> dict[str, Any]:
    """The run's entry of data/index.js: what the list, the filters and every page of it need."""
    method = str(export.concepts.summary["method"])
    return {
        "name": run.name,
        "description": run.description,
        "variant": run.variant,
        "file": f"data/run-{r:03d}",
        "n_latents": int(export.alive.size),
        "alive": int(export.alive.sum()),
        "valid": int(export.concepts.latents["valid"].sum()),
        "nested": export.nested,
        "ladder": export.ladder,
        "score_label": SCORE_LABELS.get(method, method),
        "checks": [{"rule": c.rule, "what": c.what, "op": c.op, "threshold": c.threshold} for c in export.checks],
        "chance": [[s, _num(level, 3)] for s, level in chance],
        "latents": _index_columns(export),
    }


def write_browser(
    out_dir: Path,
    runs: Sequence[RunResults],
    runs_dir: Path,
    images: Path,
    image_root: Path | None = None,
    figures: Mapping[str, Path] | None = None,
    top: int = 16,
    random: int = 8,
    bins: int = 24,
    matches: int = 3,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Path]:
    """Write the concept browser of `runs` into `out_dir` and return its files by name relative to
    it. `runs_dir/<run>` holds each SAE, `images` is the store `msae concepts --images` used
    (its `path` column resolved against `image_root`), `figures` the report's own files (for
    pareto.png). Runs without concepts outputs appear in the comparison only."""
    out_dir = Path(out_dir)
    (out_dir / "index.html").unlink(missing_ok=True)  # the done file goes first, comes back last
    store = read_embeddings(images)
    exported: list[tuple[RunResults, RunExport]] = [
        (run, export_run(runs_dir / run.name, images, run.concepts_dir, top, random, bins, seed, device, store=store))
        for run in tqdm(runs, desc="browser: latents", unit="run", leave=False)
        if run.concepts_dir is not None and run.concepts is not None and (runs_dir / run.name / "config.json").is_file()
    ]
    if not exported and runs:
        raise MsaeError(f"none of the runs has both {runs_dir}/<run> and concepts outputs: nothing to browse")
    exports = [e for _, e in exported]
    refs, files = _write_images(out_dir, exports, store, images, image_root)

    chance = [chance_cosine(e.decoder, e.alive, store.embeddings, seed=seed) for e in exports]
    entries = []
    for r, (run, export) in enumerate(exported):
        others = [s for s, other in enumerate(exports) if s != r and comparable(export, other)]
        pairs = [(s, *best_matches(export.decoder, exports[s].decoder, exports[s].alive, matches)) for s in others]
        files.update(_write_chunks(out_dir, r, _latent_pages(export, refs, pairs)))
        entries.append(_run_entry(run, export, r, [(s, chance[s]) for s in others]))
    _remove_stale(out_dir / "data", "run-*.js", set(files.values()))
    index = {
        "runs": entries,
        "attributes": sorted({a for e in entries for a in e["latents"]["attr"] if a}),
        "n_images": len(store),
        "store": Path(images).name,
        "matches": matches,
        "chunk": CHUNK,
    }
    files["data/index.js"] = write_text_atomic(out_dir / "data" / "index.js", js_data("window.MSAE_INDEX", index))

    overview, copied = overview_html(runs, out_dir, figures or {}, {run.name: r for r, (run, _) in enumerate(exported)})
    _remove_stale(out_dir / "figures", "*", set(copied))
    files.update({p.relative_to(out_dir).as_posix(): p for p in copied})
    for name in ("browser.js", "browser.css"):
        files[name] = write_text_atomic(out_dir / name, _static(name))
    template = _static("index.html")
    if template.count(PLACEHOLDER) != 1:
        raise MsaeError(f"msae/report/browser/static/index.html: expected one {PLACEHOLDER} marker")
    files["index.html"] = write_text_atomic(out_dir / "index.html", template.replace(PLACEHOLDER, overview))
    return files
