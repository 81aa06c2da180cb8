"""The concepts stage: name every latent, decide which names are valid, score them, show them.

Inputs are files (an SAE directory, a vocabulary store, an image store, optionally a caption
store); outputs go to one directory, each file atomic and `summary.json` written last:
names.parquet (latent, term, score, rank, frequency), latents.parquet (latent, name, score,
margin, frequency, valid, attribute, and the evidence behind `valid`), galleries/*.png,
index.html and summary.json.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msae.concepts.gallery import GalleryEntry, render_page, write_index
from msae.concepts.groundtruth import score_names
from msae.concepts.naming import DEFAULT_BUDGET
from msae.concepts.null import (
    Assessment,
    Evidence,
    FalsePositives,
    NullModel,
    assess,
    false_positive_rate,
    fit_null,
)
from msae.concepts.validity import ValidityRule
from msae.config.concepts import ConceptsConfig
from msae.errors import MsaeError
from msae.identity import identity_block
from msae.io import atomic_path, check_output, staged_dir, write_json_atomic
from msae.layout import GALLERY_DIR, LATENTS_FILE, NAMES_FILE, SUMMARY_FILE
from msae.sae.model import SparseAutoencoder
from msae.store import EmbeddingSet, read_embeddings, read_meta, resolve_image_paths

log = logging.getLogger(__name__)


def load_captions(images: EmbeddingSet, captions_path: Path | None) -> list[object] | None:
    """Captions aligned with the image rows: from `--captions` (joined by id) or the image store's
    `text` column; None when neither exists."""
    if captions_path is None:
        return images.columns["text"].tolist() if "text" in images.columns else None
    texts = read_embeddings(captions_path, columns=["text"])
    by_id = dict(zip(texts.ids, texts.columns["text"]))
    matched = [by_id.get(i) for i in images.ids]
    if not any(isinstance(t, str) for t in matched):
        raise MsaeError(f"{captions_path}: no caption id matches an image id of the image store")
    return matched


def _parse_latents(latents: Sequence[int], n: int) -> list[int]:
    bad = [j for j in latents if not 0 <= j < n]
    if bad:
        raise MsaeError(f"--latents {','.join(map(str, bad))}: latent ids must lie in 0..{n - 1}")
    return list(dict.fromkeys(latents))


@dataclass
class _Inputs:
    """The checked inputs of one concepts run."""

    sae: SparseAutoencoder
    terms: np.ndarray  # object array of vocabulary terms
    vocab: EmbeddingSet
    images: EmbeddingSet
    captions: list[object] | None
    extra: list[int]  # latents whose pages are drawn in any case


def _load_inputs(config: ConceptsConfig) -> _Inputs:
    from msae.runtime import resolve_device
    from msae.sae import load

    sae = load(config.sae, device=resolve_device(config.device))
    sae.require_compatible(read_meta(config.vocab), str(config.vocab), modality="text")
    sae.require_compatible(read_meta(config.images), str(config.images), modality="image")
    if config.captions is not None:
        sae.require_compatible(read_meta(config.captions), str(config.captions), modality="text")
    vocab = read_embeddings(config.vocab, columns=[], expect_dim=sae.config.d)
    images = read_embeddings(config.images, expect_dim=sae.config.d)
    captions = load_captions(images, config.captions)
    extra = _parse_latents(config.latents, sae.config.n_latents)
    return _Inputs(sae, np.asarray(vocab.ids, dtype=object), vocab, images, captions, extra)


def _decide(
    inputs: _Inputs, config: ConceptsConfig, rule: ValidityRule, budget: int
) -> tuple[Assessment, NullModel, FalsePositives]:
    """Name every latent, apply the valid-concept rule, and measure how often the same rule
    accepts random latents drawn inside this data's span (msae.concepts.null)."""
    sae, vocab, images = inputs.sae, inputs.vocab, inputs.images
    log.info(
        "naming %d latents against %d terms (%s, gap %s)",
        sae.config.n_latents,
        len(inputs.terms),
        config.method,
        config.gap,
    )
    null = fit_null(
        sae,
        vocab.embeddings,
        images.embeddings,
        config.method,
        config.gap,
        rule.null_quantile,
        config.null_samples,
        config.seed,
        budget,
    )
    evidence = Evidence(vocab.embeddings, inputs.terms, images.embeddings, inputs.captions)
    verdicts = assess(sae, evidence, null, rule, config.top_terms, config.top_images, budget, progress=True)
    chance = false_positive_rate(
        sae, evidence, null, rule, seed=config.seed, top_images=config.top_images, budget=budget
    )
    log.info("random in-span latents judged valid: %.1f%% (rule 2 threshold %.2f)", 100 * chance.rate, null.threshold)
    return verdicts, null, chance


def _write_tables(out: Path, inputs: _Inputs, v: Assessment, attributes: Any, precision: Any) -> None:
    """latents.parquet (one row per latent, with the evidence behind `valid`) and names.parquet."""
    n = inputs.sae.config.n_latents
    ranking, frequency = v.ranking, v.activity.frequency
    latents_table = pd.DataFrame(
        {
            "latent": np.arange(n, dtype=np.int64),
            "name": v.names,
            "score": ranking.scores[:, 0].astype(np.float64),
            "margin": ranking.margin,
            "frequency": frequency,
            "valid": v.valid,
            "attribute": attributes,
            "z": ranking.z,
            "distinctness": v.match_z,
            "active_images": v.activity.active_count.astype(np.int64),
            "agreement_z": v.agreement_z,
            "caption_rate": v.caption_rate,
            "caption_p": v.caption_p,
            "precision": precision,
        }
    )
    r = ranking.terms.shape[1]
    names_table = pd.DataFrame(
        {
            "latent": np.repeat(np.arange(n, dtype=np.int64), r),
            "term": inputs.terms[ranking.terms.reshape(-1)].tolist(),
            "score": ranking.scores.reshape(-1).astype(np.float64),
            "rank": np.tile(np.arange(1, r + 1, dtype=np.int64), n),
            "frequency": np.repeat(frequency, r),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    for table, name in ((names_table, NAMES_FILE), (latents_table, LATENTS_FILE)):
        with atomic_path(out / name) as tmp:
            table.to_parquet(tmp, index=False)


def _write_galleries(out: Path, inputs: _Inputs, v: Assessment, config: ConceptsConfig) -> tuple[int, int]:
    """Gallery pages of the most frequent valid latents (and --latents) plus index.html;
    returns (pages, unreadable images)."""
    images, captions, valid = inputs.images, inputs.captions, v.valid
    if "path" not in images.columns:
        log.warning("%s has no path column: no galleries", config.images)
        return 0, 0
    shown = [j for j in np.argsort(-v.activity.frequency, kind="stable") if valid[j]][: config.gallery_limit]
    shown += [j for j in inputs.extra if j not in shown]
    paths = resolve_image_paths(images, config.images, None)
    entries, unreadable = [], 0
    for j in shown:
        picks = [int(i) for i in v.activity.top_images[j] if i >= 0]
        entry = GalleryEntry(
            latent=int(j),
            name=v.names[j],
            score=float(v.ranking.scores[j, 0]),
            frequency=float(v.activity.frequency[j]),
            valid=bool(valid[j]),
            images=[paths[i] for i in picks],
            activations=[float(a) for a in v.activity.top_values[j][: len(picks)]],
            captions=[c if isinstance(c, str) else "" for c in (captions[i] for i in picks)]
            if captions
            else [""] * len(picks),
        )
        unreadable += render_page(entry, out / GALLERY_DIR / entry.filename)[1]
        entries.append(entry)
    write_index(out, entries, f"Concepts of {config.sae.name}")
    return len(entries), unreadable


def extract_concepts(config: ConceptsConfig, budget: int = DEFAULT_BUDGET) -> dict[str, Any]:
    """`msae concepts`: run the whole stage and return summary.json's content (written last)."""
    rule = ValidityRule(
        min_active=config.min_active,
        null_quantile=config.null_quantile,
        min_agreement_z=config.min_agreement_z,
        caption_alpha=config.caption_alpha,
        min_caption_rate=config.min_caption_rate,
    )
    check_output(config.out, folder=True)
    inputs = _load_inputs(config)
    v, null, chance = _decide(inputs, config, rule, budget)
    attributes, precision, truth = score_names(v.names, v.valid, v.activity.top_images, inputs.images.columns)
    identity = identity_block(config.sae, vocab=config.vocab, images=config.images, captions=config.captions)
    # every file goes to a staging folder that replaces an earlier run's files only at the end
    with staged_dir(config.out, SUMMARY_FILE, prune=(f"{GALLERY_DIR}/latent_*.png",)) as out:
        _write_tables(out, inputs, v, attributes, precision)
        pages, unreadable = _write_galleries(out, inputs, v, config)
        valid = v.valid
        summary: dict[str, Any] = {
            "valid_concepts": int(valid.sum()),
            "n_latents": int(inputs.sae.config.n_latents),
            "n_terms": int(len(inputs.terms)),
            "n_images": int(len(inputs.images)),
            "method": config.method,
            "gap": config.gap,
            "alive_latents": int((v.activity.active_count > 0).sum()),
            "firing_latents": int(v.fires.sum()),
            "distinct_latents": int(v.distinct.sum()),
            "agreeing_latents": int(v.agrees.sum()),
            "unique_valid_names": int(len({v.names[j] for j in np.flatnonzero(valid)})),
            "null_threshold": null.threshold,
            "distinctness": "match_z",
            **chance.summary(),
            "agreement": "captions" if inputs.captions is not None else "embeddings",
            "galleries": pages,
            "unreadable_images": int(unreadable),
            **{f"rule_{k}": val for k, val in asdict(rule).items()},
            **truth,
        }
        write_json_atomic(out / SUMMARY_FILE, {**summary, "identity": identity})
    return summary
