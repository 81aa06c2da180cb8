"""File-level entry points of `msae probe similarity|bias`: read and check every input first,
compute, then write the outputs into a staging folder that replaces the output folder's files only
when all are written (msae.io.staged_dir; summary.json last as the "done" marker).

All input problems (unknown concept, query id not in the store, missing or one-class label
column, mismatched backbone, a text store where images are needed) are raised before anything is
written, and a failure while writing leaves the output folder as it was. summary.json and the
probe's JSON carry an `identity` block (msae.identity): the hashes of the SAE and input files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from msae.config.probes import BiasConfig, ProbeCommon, SimilarityConfig
from msae.errors import MsaeError
from msae.identity import identity_block
from msae.io import read_text, staged_dir, write_json_atomic
from msae.layout import SUMMARY_FILE
from msae.probes import bias as bias_mod
from msae.probes import similarity as sim
from msae.probes.concepts import Concept, load_latent_table, resolve_concepts, valid_concepts
from msae.sae.model import SparseAutoencoder
from msae.store import EmbeddingSet, read_embeddings


def load_sae(config: ProbeCommon) -> SparseAutoencoder:
    """The probe's SAE (eval mode) on the configured device."""
    from msae.runtime import resolve_device
    from msae.sae import load

    return load(config.sae, device=resolve_device(config.device))


def _safe_name(text: str) -> str:
    """A file-name part made of the text's letters, digits and ._- (never '.', '..' or empty)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "item"


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
        text = read_text(path, "--queries id list")
        ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
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


def _strip_items(
    nb: sim.Neighbours, q: int, labels: np.ndarray | None, truth: dict[str, Any] | None, image: Any, store: EmbeddingSet
) -> list[dict[str, Any]]:
    """One strip row: each neighbour of query `q` with its image, score and ground-truth mark."""
    shown = []
    for r, score in zip(nb.rows[q], nb.scores[q]):
        value = f"\n{labels[r]}" if labels is not None else ""
        has = None if labels is None or truth is None else bool(labels[r] == truth["value"])
        shown.append(
            {
                "image": image(int(r)),
                "fallback": _fallback_text(store, int(r)),
                "title": f"{score:.2f}{value}",
                "has": has,
            }
        )
    return shown


def _write_strips(
    out: Path,
    result: sim.SimilarityResult,
    store: EmbeddingSet,
    query_files: Sequence[str],
    image_root: str | None,
    max_strips: int,
    x_unit: str,
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
        query_image = (
            image(row_q) if row_q >= 0 else load_image(query_files[q - int((result.queries.rows >= 0).sum())], None)
        )

        rows = [("original", _strip_items(result.original, q, labels, truth, image, store))]
        rows += [
            (
                f"α={alpha:g}{x_unit}\n(z={result.raw_alphas[j, a]:.3g})",
                _strip_items(result.edited[j][a], q, labels, truth, image, store),
            )
            for a, alpha in enumerate(result.alphas)
        ]
        name = f"strips/{_safe_name(result.queries.names[q])}__{concept.key}.png"
        neighbour_strip(out / name, f"{result.queries.names[q]}\n{concept.label}", query_image, rows)
        written.append(name)
    return written


def run_similarity(config: SimilarityConfig) -> dict[str, float]:
    """`msae probe similarity`: neighbours.json, strips/*.png, curves.png, summary.json."""
    from msae.probes.plots import concept_curves

    alpha_list = sim.parse_alphas(config.alphas)
    query_images = [f.strip() for f in config.query_images.split(",") if f.strip()]
    sae = load_sae(config)
    store = read_embeddings(config.embeddings)
    sae.require_compatible(store.meta, str(config.embeddings))
    table = load_latent_table(config.concepts) if config.concepts else None
    concepts = resolve_concepts(list(config.concept), table, sae.config.n_latents)
    ids = parse_query_ids(config.queries, store, config.seed)
    if not ids and not query_images:
        raise MsaeError("--queries / --query-images: give at least one query")
    query_set = sim.Queries.from_store(store, ids)
    if query_images:
        outside = embed_query_images(query_images, store.meta, config.device)
        query_set = sim.Queries(
            query_set.names + [Path(f).name for f in query_images],
            np.concatenate([query_set.embeddings, outside.astype(np.float32)]),
            np.concatenate([query_set.rows, np.full(len(query_images), -1, dtype=np.int64)]),
        )
    mode, unit = config.mode, config.alpha_unit
    result = sim.search(sae, store, query_set, concepts, alpha_list, config.top, mode, unit)
    identity = identity_block(config.sae, embeddings=config.embeddings, concepts=config.concepts)

    x_unit = "×p99" if (mode != "scale" and unit == "p99") else ""
    summary = sim.summary(result)
    with staged_dir(config.out, SUMMARY_FILE) as target:
        write_json_atomic(target / "neighbours.json", {**sim.to_json(result, store, mode, unit), "identity": identity})
        image_root = str(config.image_root) if config.image_root is not None else None
        _write_strips(target, result, store, query_images, image_root, config.max_strips, x_unit)
        if result.curves:
            label = {
                "set": "strength α set on the concept",
                "add": "strength α added to the concept",
                "scale": "factor α on the concept",
            }[mode]
            concept_curves(
                target / "curves.png", alpha_list, result.curves, f"{label} ({x_unit.lstrip('×') or 'raw units'})"
            )
        write_json_atomic(target / SUMMARY_FILE, {**summary, "identity": identity})
    return summary


def _candidates(
    specs: Sequence[str], table: Any, sae: SparseAutoencoder, test: EmbeddingSet, min_frequency: float
) -> list[Concept]:
    n = sae.config.n_latents
    if specs:
        return resolve_concepts(specs, table, n)
    if table is not None:
        found = valid_concepts(table, n)
        if not found:
            raise MsaeError("--concepts: the table has no valid latent; give --candidates or --min-frequency")
        return found
    return bias_mod.candidates_by_frequency(sae, test, min_frequency, n)


def run_bias(config: BiasConfig) -> dict[str, float]:
    """`msae probe bias`: bias.json, bias.png, summary.json."""
    from msae.probes.plots import bias_bars
    from msae.runtime import seed_everything

    spurious_spec = bias_mod.spurious_arg(config.spurious)
    seed_everything(config.seed)
    sae = load_sae(config)
    train = read_embeddings(config.train)
    test = read_embeddings(config.test)
    for path, store in ((config.train, train), (config.test, test)):
        sae.require_compatible(store.meta, str(path), modality="image")
    column, positive = config.target_column, config.positive
    y_train = bias_mod.binary_target(train, column, positive, str(config.train))
    bias_mod.require_two_classes(y_train, column, positive, str(config.train))
    y_test = bias_mod.binary_target(test, column, positive, str(config.test))
    table = load_latent_table(config.concepts) if config.concepts else None
    candidates = _candidates(list(config.candidates), table, sae, test, config.min_frequency)
    found = (
        bias_mod.spurious_from(train, y_train, *spurious_spec, inferred=False)
        if spurious_spec
        else bias_mod.infer_spurious(train, y_train, column)
    )
    mode, strength = config.mode, config.strength
    result = bias_mod.analyse(
        sae,
        train,
        test,
        y_train,
        y_test,
        candidates,
        mode,
        strength,
        config.alpha_unit,
        found,
        config.rank_by,
        config.c,
        config.seed,
    )

    identity = identity_block(config.sae, train=config.train, test=config.test, concepts=config.concepts)
    target_info = {
        "column": column,
        "positive": positive,
        "train": str(config.train),
        "test": str(config.test),
        "train_positive_rate": float(y_train.mean()),
        "test_positive_rate": float(y_test.mean()),
    }
    shown = min(config.plot_top, len(result.concepts))
    what = "removing" if mode == "remove" else f"{mode} {strength:g}"
    title = (
        f"Effect of {what} each concept on p({column}{'=' + positive if positive else ''}), ranked by {config.rank_by}"
    )
    summary = bias_mod.summary(result, len(train), len(test), config.rank_by)
    details = bias_mod.to_json(result, target_info, mode, strength, config.alpha_unit, config.rank_by)
    with staged_dir(config.out, SUMMARY_FILE) as target:
        write_json_atomic(target / "bias.json", {**details, "identity": identity})
        bias_bars(
            target / "bias.png",
            [k.label for k in result.concepts[:shown]],
            {g: {k: v[:shown] for k, v in m.items()} for g, m in result.effects.items()},
            bias_mod.spurious_index(result),
            title,
        )
        write_json_atomic(target / SUMMARY_FILE, {**summary, "identity": identity})
    return summary
