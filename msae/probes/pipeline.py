"""File-level entry points of `msae probe similarity|bias`: read and check every input first,
compute, then write the outputs (each file atomically, summary.json last as the "done" marker).

All input problems (unknown concept, query id not in the store, missing or one-class label
column, mismatched backbone) are raised before anything is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msae.errors import MsaeError
from msae.io import write_json_atomic
from msae.probes import bias as bias_mod
from msae.probes import similarity as sim
from msae.probes.concepts import Concept, load_latent_table, resolve_concepts, valid_concepts
from msae.probes.intervention import check_sae_matches_store, sae_n_latents
from msae.store import EmbeddingSet, read_embeddings


def load_sae(sae_dir: str | os.PathLike[str], device: str) -> tuple[Any, dict[str, Any] | None]:
    """The SAE module (eval mode) and the `data` block of its config.json (its training backbone)."""
    from msae.runtime import resolve_device
    from msae.sae import load

    sae = load(sae_dir, device=resolve_device(device))
    data = getattr(sae, "info", {}).get("data")
    return sae, data if isinstance(data, dict) else None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "item"


def _fresh_output(out: Path) -> None:
    """Remove a previous summary.json first, so a crash mid-write never leaves a stale 'done' marker."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)


def parse_query_ids(spec: str | None, store: EmbeddingSet, seed: int) -> list[str]:
    """'id1,id2', '@FILE' (one id per line) or 'random:N' (N store items, seeded)."""
    if spec is None or not spec.strip():
        return []
    spec = spec.strip()
    if spec.startswith("random:"):
        try:
            n = int(spec[len("random:") :])
        except ValueError as exc:
            raise MsaeError(f"--queries {spec!r}: expected random:N with an integer N") from exc
        if not 1 <= n <= len(store):
            raise MsaeError(f"--queries {spec!r}: N must lie in 1..{len(store)} (the store's size)")
        rows = np.sort(np.random.default_rng(seed).choice(len(store), size=n, replace=False))
        return [str(store.ids[r]) for r in rows]
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise MsaeError(f"--queries {spec}: file {path} not found")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        if not ids:
            raise MsaeError(f"--queries {spec}: {path} lists no ids")
        return ids
    return [i.strip() for i in spec.split(",") if i.strip()]


def embed_query_images(files: Sequence[str], meta: dict[str, Any], device: str) -> np.ndarray:
    """Embed image files with the store's backbone, so they are comparable with its items."""
    from PIL import Image, UnidentifiedImageError

    from msae.backbone import load_backbone

    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise MsaeError(f"--query-images: file(s) not found: {', '.join(missing)}")
    backbone = load_backbone(meta["model"], meta["pretrained"], device=device)
    import torch

    pixels = []
    for f in files:
        try:
            with Image.open(f) as img:
                pixels.append(backbone.preprocess(img.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise MsaeError(f"--query-images: {f} is not a readable image ({exc})") from exc
    return backbone.encode_images(torch.stack(pixels)).numpy()


def _fallback_text(store: EmbeddingSet, row: int) -> str:
    attrs = [str(store.columns[c].iloc[row]) for c in store.columns.columns if c.startswith("attr_")]
    return "\n".join([str(store.ids[row]), *attrs[:3]])


def _write_strips(
    out: Path, result: sim.SimilarityResult, store: EmbeddingSet, query_files: Sequence[str],
    image_root: str | None, max_strips: int, x_unit: str,
) -> list[str]:
    from tqdm import tqdm

    from msae.probes.plots import load_image, neighbour_strip

    paths = store.columns["path"] if "path" in store.columns else None
    image = (lambda r: load_image(paths.iloc[r], image_root)) if paths is not None else (lambda r: None)
    written = []
    n_queries = min(len(result.queries.names), max_strips)
    jobs = [(q, j) for q in range(n_queries) for j in range(len(result.concepts))]
    for q, j in tqdm(jobs, desc="strips", unit="png", disable=len(jobs) < 2):
        concept = result.concepts[j]
        truth = result.curves.get(concept.key)
        labels = store.columns[f"attr_{truth['attribute']}"].astype(str).to_numpy() if truth else None
        row_q = int(result.queries.rows[q])
        query_image = image(row_q) if row_q >= 0 else load_image(query_files[q - int((result.queries.rows >= 0).sum())], None)

        def items(nb: sim.Neighbours) -> list[dict[str, Any]]:
            shown = []
            for r, score in zip(nb.rows[q], nb.scores[q]):
                value = f"\n{labels[r]}" if labels is not None else ""
                shown.append({"image": image(int(r)), "fallback": _fallback_text(store, int(r)),
                              "title": f"{score:.2f}{value}", "has": None if labels is None else bool(labels[r] == truth["value"])})
            return shown

        rows = [("original", items(result.original))]
        rows += [(f"α={alpha:g}{x_unit}\n(z={result.raw_alphas[j, a]:.3g})", items(result.edited[j][a]))
                 for a, alpha in enumerate(result.alphas)]
        name = f"strips/{_safe_name(result.queries.names[q])}__{concept.key}.png"
        neighbour_strip(out / name, f"{result.queries.names[q]}\n{concept.label}", query_image, rows)
        written.append(name)
    return written


def run_similarity(
    sae_dir: str | os.PathLike[str],
    embeddings: str | os.PathLike[str],
    concept_specs: Sequence[str],
    out: str | os.PathLike[str],
    queries: str | None = None,
    query_images: Sequence[str] = (),
    concepts_path: str | os.PathLike[str] | None = None,
    alphas: str | Sequence[float] | None = None,
    top: int = 8,
    mode: str = "set",
    alpha_unit: str = "p99",
    image_root: str | None = None,
    max_strips: int = 16,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, float]:
    """`msae probe similarity`: neighbours.json, strips/*.png, curves.png, summary.json."""
    from msae.probes.intervention import check_mode
    from msae.probes.plots import concept_curves

    check_mode(mode)
    alpha_list = sim.parse_alphas(alphas)
    if top < 1:
        raise MsaeError(f"--top {top}: must be at least 1")
    sae, sae_data = load_sae(sae_dir, device)
    store = read_embeddings(embeddings)
    check_sae_matches_store(sae, sae_data, store.meta, str(embeddings))
    table = load_latent_table(concepts_path) if concepts_path else None
    concepts = resolve_concepts(concept_specs, table, sae_n_latents(sae))
    ids = parse_query_ids(queries, store, seed)
    if not ids and not query_images:
        raise MsaeError("--queries / --query-images: give at least one query")
    query_set = sim.Queries.from_store(store, ids)
    if query_images:
        outside = embed_query_images(query_images, store.meta, device)
        query_set = sim.Queries(
            query_set.names + [Path(f).name for f in query_images],
            np.concatenate([query_set.embeddings, outside.astype(np.float32)]),
            np.concatenate([query_set.rows, np.full(len(query_images), -1, dtype=np.int64)]),
        )
    result = sim.search(sae, store, query_set, concepts, alpha_list, top, mode, alpha_unit)

    target = Path(out)
    _fresh_output(target)
    x_unit = "×p99" if (mode != "scale" and alpha_unit == "p99") else ""
    write_json_atomic(target / "neighbours.json", sim.to_json(result, store, mode, alpha_unit))
    _write_strips(target, result, store, list(query_images), image_root, max_strips, x_unit)
    if result.curves:
        label = {"set": "strength α set on the concept", "add": "strength α added to the concept", "scale": "factor α on the concept"}[mode]
        concept_curves(target / "curves.png", alpha_list, result.curves, f"{label} ({x_unit.lstrip('×') or 'raw units'})")
    summary = sim.summary(result)
    write_json_atomic(target / "summary.json", summary)
    return summary


def _candidates(
    specs: Sequence[str], table: Any, sae: Any, test: EmbeddingSet, min_frequency: float
) -> list[Concept]:
    n = sae_n_latents(sae)
    if specs:
        return resolve_concepts(specs, table, n)
    if table is not None:
        found = valid_concepts(table, n)
        if not found:
            raise MsaeError("--concepts: the table has no valid latent; give --candidates or --min-frequency")
        return found
    if not 0 < min_frequency <= 1:
        raise MsaeError(f"--min-frequency {min_frequency}: must lie in (0, 1]")
    return bias_mod.candidates_by_frequency(sae, test, min_frequency, n)


def run_bias(
    sae_dir: str | os.PathLike[str],
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str],
    target_column: str,
    out: str | os.PathLike[str],
    positive: str | None = None,
    concepts_path: str | os.PathLike[str] | None = None,
    candidate_specs: Sequence[str] = (),
    min_frequency: float = 0.01,
    mode: str = "remove",
    strength: float = 0.0,
    alpha_unit: str = "p99",
    spurious: str | None = None,
    rank_by: str = "abs_dp",
    c: float = 1.0,
    plot_top: int = 20,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, float]:
    """`msae probe bias`: bias.json, bias.png, summary.json."""
    from msae.probes.plots import bias_bars
    from msae.runtime import seed_everything

    bias_mod.check_options(mode, rank_by, alpha_unit)
    if c <= 0:
        raise MsaeError(f"--C {c}: must be > 0")
    spurious_spec = bias_mod.spurious_arg(spurious)
    seed_everything(seed)
    sae, sae_data = load_sae(sae_dir, device)
    train = read_embeddings(train_path)
    test = read_embeddings(test_path)
    for path, store in ((train_path, train), (test_path, test)):
        check_sae_matches_store(sae, sae_data, store.meta, str(path))
    y_train = bias_mod.binary_target(train, target_column, positive, str(train_path))
    bias_mod.require_two_classes(y_train, target_column, positive, str(train_path))
    y_test = bias_mod.binary_target(test, target_column, positive, str(test_path))
    table = load_latent_table(concepts_path) if concepts_path else None
    candidates = _candidates(candidate_specs, table, sae, test, min_frequency)
    found = (
        bias_mod.spurious_from(train, y_train, *spurious_spec, inferred=False)
        if spurious_spec
        else bias_mod.infer_spurious(train, y_train, target_column)
    )
    result = bias_mod.analyse(
        sae, train, test, y_train, y_test, candidates, mode, strength, alpha_unit, found, rank_by, c, seed
    )

    target = Path(out)
    _fresh_output(target)
    target_info = {"column": target_column, "positive": positive, "train": str(train_path), "test": str(test_path),
                   "train_positive_rate": float(y_train.mean()), "test_positive_rate": float(y_test.mean())}
    write_json_atomic(target / "bias.json", bias_mod.to_json(result, target_info, mode, strength, alpha_unit, rank_by))
    shown = min(plot_top, len(result.concepts))
    what = "removing" if mode == "remove" else f"{mode} {strength:g}"
    title = f"Effect of {what} each concept on p({target_column}{'=' + positive if positive else ''}), ranked by {rank_by}"
    bias_bars(target / "bias.png", [k.label for k in result.concepts[:shown]],
              {g: {k: v[:shown] for k, v in m.items()} for g, m in result.effects.items()},
              bias_mod.spurious_index(result), title)
    summary = bias_mod.summary(result, len(train), len(test), rank_by)
    write_json_atomic(target / "summary.json", summary)
    return summary
