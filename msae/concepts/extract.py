"""The concepts stage: name every latent, decide which names are valid, score them, show them.

Inputs are files (an SAE directory, a vocabulary store, an image store, optionally a caption
store); outputs go to one directory, each file atomic and `summary.json` written last:
names.parquet (latent, term, score, rank, frequency), latents.parquet (latent, name, score,
margin, frequency, valid, attribute, and the evidence behind `valid`), galleries/*.png,
index.html and summary.json.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msae.concepts.activity import image_activity
from msae.concepts.gallery import GalleryEntry, render_page, write_index
from msae.concepts.groundtruth import score_names
from msae.concepts.naming import DEFAULT_BUDGET, null_distinctness, rank_terms
from msae.concepts.validity import ValidityRule, caption_agreement, embedding_agreement
from msae.errors import MsaeError
from msae.io import atomic_path, write_json_atomic
from msae.store import EmbeddingSet, read_embeddings, require_same_backbone

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


def _image_paths(images: EmbeddingSet, images_path: Path) -> list[Path | None]:
    """Resolve the `path` column: as stored (relative to the working directory, where `msae embed`
    wrote it), else relative to the image store's folder."""
    if "path" not in images.columns:
        return [None] * len(images)
    out: list[Path | None] = []
    for value in images.columns["path"]:
        if not isinstance(value, str) or not value:
            out.append(None)
            continue
        p = Path(value)
        out.append(p if p.is_absolute() or p.exists() else images_path.parent / p)
    return out


def _parse_latents(latents: Sequence[int], n: int) -> list[int]:
    bad = [j for j in latents if not 0 <= j < n]
    if bad:
        raise MsaeError(f"--latents {','.join(map(str, bad))}: latent ids must lie in 0..{n - 1}")
    return list(dict.fromkeys(latents))


def extract_concepts(
    sae_dir: str | os.PathLike[str],
    vocab_path: str | os.PathLike[str],
    images_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    captions_path: str | os.PathLike[str] | None = None,
    method: str = "decoder",
    gap: str = "center",
    top_terms: int = 5,
    top_images: int = 16,
    rule: ValidityRule = ValidityRule(),
    null_samples: int = 1000,
    gallery_limit: int = 100,
    latents: Sequence[int] = (),
    device: str = "auto",
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
) -> dict[str, Any]:
    """Run the whole stage and return summary.json's content."""
    from msae.runtime import resolve_device
    from msae.sae import load

    sae_dir, vocab_path, images_path, out = Path(sae_dir), Path(vocab_path), Path(images_path), Path(out_dir)
    captions_path = Path(captions_path) if captions_path is not None else None
    rule.check()
    for value, option in ((top_terms, "--top-terms"), (top_images, "--top-images"), (null_samples, "--null-samples")):
        if value < 1:
            raise MsaeError(f"{option} {value}: must be >= 1")
    if gallery_limit < 0:
        raise MsaeError(f"--gallery-limit {gallery_limit}: must be >= 0")
    sae = load(sae_dir, device=resolve_device(device))
    sae_data = dict(getattr(sae, "info", {}).get("data") or {})
    d = sae.config.d
    vocab = read_embeddings(vocab_path, columns=[], expect_dim=d)
    if vocab.meta.get("modality") != "text":
        raise MsaeError(f"{vocab_path}: a vocabulary store must hold text embeddings (modality is {vocab.meta.get('modality')!r})")
    require_same_backbone(vocab.meta, str(vocab_path), sae_data, f"the SAE in {sae_dir} was trained on")
    images = read_embeddings(images_path, expect_dim=d)
    require_same_backbone(images.meta, str(images_path), sae_data, f"the SAE in {sae_dir} was trained on")
    if captions_path is not None:
        from msae.store import read_meta

        require_same_backbone(read_meta(captions_path), str(captions_path), sae_data, f"the SAE in {sae_dir} was trained on")
    captions = load_captions(images, captions_path)
    extra = _parse_latents(latents, sae.config.n_latents)
    terms = np.asarray(vocab.ids, dtype=object)
    log.info("naming %d latents against %d terms (%s, gap %s)", sae.config.n_latents, len(terms), method, gap)

    ranking = rank_terms(sae, vocab.embeddings, method, gap, top_terms, budget, progress=True)
    null = null_distinctness(sae, vocab.embeddings, method, gap, null_samples, seed, budget)
    threshold = float(np.quantile(null, rule.null_quantile))
    activity = image_activity(sae, images.embeddings, top_images, budget)

    names = terms[ranking.terms[:, 0]].tolist()
    agreement_z = embedding_agreement(vocab.embeddings[ranking.terms[:, 0]], vocab.embeddings.mean(0),
                                      images.embeddings, activity.top_images)
    if captions is not None:
        caption_rate, caption_p = caption_agreement(names, activity.top_images, captions)
        agrees = (caption_p <= rule.caption_alpha) & (caption_rate >= rule.min_caption_rate)
    else:
        caption_rate = caption_p = np.full(sae.config.n_latents, np.nan)
        agrees = agreement_z >= rule.min_agreement_z
    fires = activity.active_count >= rule.min_active
    distinct = ranking.distinctness >= threshold
    valid = fires & distinct & agrees
    attributes, precision, truth = score_names(names, valid, activity.top_images, images.columns)

    n = sae.config.n_latents
    frequency = activity.frequency
    latents_table = pd.DataFrame({
        "latent": np.arange(n, dtype=np.int64),
        "name": names,
        "score": ranking.scores[:, 0].astype(np.float64),
        "margin": ranking.margin,
        "frequency": frequency,
        "valid": valid,
        "attribute": attributes,
        "z": ranking.z,
        "distinctness": ranking.distinctness,
        "active_images": activity.active_count.astype(np.int64),
        "agreement_z": agreement_z,
        "caption_rate": caption_rate,
        "caption_p": caption_p,
        "precision": precision,
    })
    r = ranking.terms.shape[1]
    names_table = pd.DataFrame({
        "latent": np.repeat(np.arange(n, dtype=np.int64), r),
        "term": terms[ranking.terms.reshape(-1)].tolist(),
        "score": ranking.scores.reshape(-1).astype(np.float64),
        "rank": np.tile(np.arange(1, r + 1, dtype=np.int64), n),
        "frequency": np.repeat(frequency, r),
    })
    out.mkdir(parents=True, exist_ok=True)
    for table, name in ((names_table, "names.parquet"), (latents_table, "latents.parquet")):
        with atomic_path(out / name) as tmp:
            table.to_parquet(tmp, index=False)

    shown = [j for j in np.argsort(-frequency, kind="stable") if valid[j]][:gallery_limit]
    shown += [j for j in extra if j not in shown]
    paths = _image_paths(images, images_path)
    entries, unreadable = [], 0
    has_paths = "path" in images.columns
    if has_paths:
        for j in shown:
            picks = [int(i) for i in activity.top_images[j] if i >= 0]
            entry = GalleryEntry(
                latent=int(j), name=names[j], score=float(ranking.scores[j, 0]), frequency=float(frequency[j]),
                valid=bool(valid[j]), images=[paths[i] for i in picks],
                activations=[float(v) for v in activity.top_values[j][: len(picks)]],
                captions=[c if isinstance(c, str) else "" for c in (captions[i] for i in picks)] if captions else [""] * len(picks),
            )
            unreadable += render_page(entry, out / "galleries" / entry.filename)[1]
            entries.append(entry)
        current = {e.filename for e in entries}
        for stale in (out / "galleries").glob("latent_*.png"):  # pages of an earlier run in this folder
            if stale.name not in current:
                stale.unlink()
        write_index(out, entries, f"Concepts of {sae_dir.name}")
    else:
        log.warning("%s has no path column: no galleries", images_path)

    summary: dict[str, Any] = {
        "valid_concepts": int(valid.sum()),
        "n_latents": int(n),
        "n_terms": int(len(terms)),
        "n_images": int(len(images)),
        "method": method,
        "gap": gap,
        "alive_latents": int((activity.active_count > 0).sum()),
        "firing_latents": int(fires.sum()),
        "distinct_latents": int(distinct.sum()),
        "agreeing_latents": int(agrees.sum()),
        "unique_valid_names": int(len({names[j] for j in np.flatnonzero(valid)})),
        "null_threshold": threshold,
        "distinctness": "z" if method == "activation" else "score",
        "agreement": "captions" if captions is not None else "embeddings",
        "galleries": len(entries),
        "unreadable_images": int(unreadable),
        **{f"rule_{k}": v for k, v in asdict(rule).items()},
        **truth,
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
