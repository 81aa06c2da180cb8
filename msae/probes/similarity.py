"""Concept-controlled similarity search (the paper's concept-controlled search; docs/paper.md).

For each query embedding and concept, the query's dense latent is edited to a strength α
(msae.probes.intervention, residual kept), and the nearest store items by cosine are retrieved
(the query itself excluded). Where the store carries ground-truth `attr_*` columns and the concept
name is a value of one of them, we measure what the edit does: the fraction of neighbours that
have the concept (should rise with α) and the fraction keeping each other attribute of the query
(should stay high: the edit changes one concept, not the whole item).

Strengths: by default α is a multiple of the concept's reference activation (the 99th percentile
of its dense activation over the store items where it is active), so α = 1 is "as strong as the
concept usually is", whatever the SAE's scale. `alpha_unit="raw"` uses α as given; mode `scale`
always uses α as a plain multiplier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from msae.config.probes import SimilarityConfig
from msae.errors import MsaeError
from msae.probes.concepts import Concept
from msae.probes.intervention import ALPHA_UNITS, activation_scale, check_mode, dense_columns, edit, raw_atoms
from msae.store import EmbeddingSet

DEFAULT_ALPHAS = tuple(float(v) for v in SimilarityConfig.model_fields["alphas"].default.split(","))


@dataclass
class Queries:
    """Query embeddings, their names, and their row in the store (-1 for outside images)."""

    names: list[str]
    embeddings: np.ndarray  # [Q, d]
    rows: np.ndarray  # [Q] int, store row or -1

    @classmethod
    def from_store(cls, store: EmbeddingSet, ids: Sequence[str]) -> Queries:
        """Queries taken from the store by id; unknown ids are an error naming them."""
        index = {str(i): r for r, i in enumerate(store.ids)}
        missing = [i for i in ids if str(i) not in index]
        if missing:
            raise MsaeError(f"--queries: id(s) not in the embedding store: {', '.join(map(str, missing[:10]))}")
        rows = np.asarray([index[str(i)] for i in ids], dtype=np.int64)
        return cls([str(i) for i in ids], store.embeddings[rows], rows)


@dataclass
class Neighbours:
    """Top neighbours of every (query, setting): ids [Q, top] and cosine scores [Q, top]."""

    rows: np.ndarray
    scores: np.ndarray


@dataclass
class SimilarityResult:
    """Everything the similarity probe measured; `to_json` and `summary` are the files' contents."""

    queries: Queries
    concepts: list[Concept]
    alphas: list[float]
    raw_alphas: np.ndarray  # [C, A] the strength actually used per concept
    scale: np.ndarray  # [C] reference activation per concept
    original: Neighbours
    edited: list[list[Neighbours]]  # [C][A]
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # per concept key, ground truth


def parse_alphas(text: str | Sequence[float] | None) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]; needs at least one finite value, in increasing order."""
    if text is None:
        return list(DEFAULT_ALPHAS)
    values = text if not isinstance(text, str) else [v for v in text.split(",") if v.strip()]
    try:
        alphas = [float(v) for v in values]
    except ValueError as exc:
        raise MsaeError(f"--alphas {text!r}: expected comma-separated numbers") from exc
    if not alphas or not np.all(np.isfinite(alphas)):
        raise MsaeError(f"--alphas {text!r}: expected at least one finite number")
    if any(b <= a for a, b in zip(alphas, alphas[1:])):
        raise MsaeError(f"--alphas {text!r}: values must be strictly increasing (curves are read left to right)")
    return alphas


def normalise(x: np.ndarray) -> np.ndarray:
    """Unit rows (float32), for cosine by dot product; a zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def nearest(vectors: np.ndarray, database_unit: np.ndarray, exclude_rows: np.ndarray, top: int) -> Neighbours:
    """Top-`top` database rows by cosine for each vector, best first, skipping `exclude_rows[i]`."""
    scores = normalise(vectors) @ database_unit.T  # [Q, N]
    own = exclude_rows >= 0
    scores[np.flatnonzero(own), exclude_rows[own]] = -np.inf
    top = min(top, database_unit.shape[0] - int(own.any()))
    part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    return Neighbours(rows=rows, scores=np.take_along_axis(scores, rows, axis=1))


def concept_strengths(
    concepts: Sequence[Concept], scale: np.ndarray, alphas: Sequence[float], mode: str, unit: str
) -> np.ndarray:
    """The strength passed to `edit` for each (concept, α): α·scale, or α itself."""
    if unit not in ALPHA_UNITS:
        raise MsaeError(f"--alpha-unit {unit!r}: expected one of {', '.join(ALPHA_UNITS)}")
    alphas_arr = np.asarray(alphas, dtype=np.float64)[None, :]
    if mode == "scale" or unit == "raw":
        return np.repeat(alphas_arr, len(concepts), axis=0)
    never = [c.label for c, s in zip(concepts, scale) if not np.isfinite(s)]
    if never:
        raise MsaeError(
            f"--concept: {', '.join(never)} is never active on the store, so a strength relative to its "
            "activation is undefined; use --alpha-unit raw"
        )
    return scale[:, None] * alphas_arr


def search(
    sae: Any,
    store: EmbeddingSet,
    queries: Queries,
    concepts: Sequence[Concept],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    top: int = 8,
    mode: str = "set",
    alpha_unit: str = "p99",
) -> SimilarityResult:
    """Neighbours of every query before and after setting each concept to each strength."""
    check_mode(mode)
    if top < 1:
        raise MsaeError(f"--top {top}: must be at least 1")
    latents = [c.latent for c in concepts]
    store_z = dense_columns(sae, store.embeddings, latents, desc="encode store")
    scale = activation_scale(store_z)
    strengths = concept_strengths(concepts, scale, alphas, mode, alpha_unit)
    query_z = dense_columns(sae, queries.embeddings, latents)
    atoms = raw_atoms(sae, latents)
    database = normalise(store.embeddings)
    original = nearest(queries.embeddings, database, queries.rows, top)
    edited = [
        [
            nearest(
                edit(queries.embeddings, query_z[:, j], atoms[j], mode, strengths[j, a]), database, queries.rows, top
            )
            for a in range(len(alphas))
        ]
        for j in range(len(concepts))
    ]
    result = SimilarityResult(queries, list(concepts), list(alphas), strengths, scale, original, edited)
    result.curves = ground_truth_curves(result, store)
    return result


def _value_column(store: EmbeddingSet, concept: Concept) -> tuple[str, str] | None:
    """(column, value as stored) when the concept names a value of a ground-truth attribute."""
    column = f"attr_{concept.attribute}"
    if not concept.attribute or column not in store.columns:
        return None
    values = {str(v).lower(): str(v) for v in store.columns[column].dropna().unique()}
    stored = values.get(concept.name.strip().lower())
    return (column, stored) if stored is not None else None


def neighbour_rates(
    neighbour_rows: np.ndarray, query_rows: np.ndarray, labels: np.ndarray, value: str, others: dict[str, np.ndarray]
) -> tuple[float, dict[str, float]]:
    """Fraction of neighbours whose `labels` equal `value`, and per other attribute the fraction
    sharing the query's value. neighbour_rows: [Q, top] store rows; query_rows: [Q]."""
    has = float(np.mean(labels[neighbour_rows] == value))
    keep = {name: float(np.mean(vals[neighbour_rows] == vals[query_rows][:, None])) for name, vals in others.items()}
    return has, keep


def ground_truth_curves(result: SimilarityResult, store: EmbeddingSet) -> dict[str, dict[str, Any]]:
    """Per concept with a ground-truth attribute: concept fraction and attribute keep rates vs α.

    Only queries from the store that do not already have the concept's value count: for those the
    neighbours can only gain the concept through the edit."""
    curves: dict[str, dict[str, Any]] = {}
    attrs = {c: store.columns[c].astype(str).to_numpy() for c in store.columns.columns if c.startswith("attr_")}
    for j, concept in enumerate(result.concepts):
        target = _value_column(store, concept)
        if target is None:
            continue
        column, value = target
        labels = attrs[column]
        counted = np.flatnonzero(result.queries.rows >= 0)
        counted = counted[labels[result.queries.rows[counted]] != value]
        if counted.size == 0:
            continue
        query_rows = result.queries.rows[counted]
        others = {a[len("attr_") :]: vals for a, vals in attrs.items() if a != column}
        orig_has, orig_keep = neighbour_rates(result.original.rows[counted], query_rows, labels, value, others)
        per_alpha = [neighbour_rates(nb.rows[counted], query_rows, labels, value, others) for nb in result.edited[j]]
        curves[concept.key] = {
            "latent": concept.latent,
            "attribute": concept.attribute,
            "value": value,
            "n_queries": int(counted.size),
            "original_concept_frac": orig_has,
            "original_keep": orig_keep,
            "concept_frac": [h for h, _ in per_alpha],
            "keep": {a: [k[a] for _, k in per_alpha] for a in orig_keep},
        }
    return curves


def _mean_keep(curve: dict[str, Any], index: int) -> float:
    keeps = [v[index] for v in curve["keep"].values()]
    return float(np.mean(keeps)) if keeps else float("nan")


def is_monotone(values: Sequence[float], tol: float = 1e-9) -> bool:
    """Non-decreasing up to `tol`."""
    return all(b >= a - tol for a, b in zip(values, values[1:]))


def summary(result: SimilarityResult) -> dict[str, float]:
    """Flat numbers for the report and `dvc metrics diff`: per concept and averaged over concepts."""
    out: dict[str, float] = {
        "n_queries": float(len(result.queries.names)),
        "n_concepts": float(len(result.concepts)),
        "n_alphas": float(len(result.alphas)),
        "top_alpha": float(result.alphas[-1]),
        "n_ground_truth_concepts": float(len(result.curves)),
    }
    if not result.curves:
        return out
    tops, keeps, origs, monotone = [], [], [], []
    for key, curve in result.curves.items():
        top_frac = curve["concept_frac"][-1]
        keep = _mean_keep(curve, -1)
        mono = float(is_monotone(curve["concept_frac"]))
        out[f"{key}_concept_frac_original"] = curve["original_concept_frac"]
        out[f"{key}_concept_frac_top"] = top_frac
        out[f"{key}_monotone"] = mono
        if np.isfinite(keep):
            out[f"{key}_keep_frac_top"] = keep
            keeps.append(keep)
        tops.append(top_frac)
        origs.append(curve["original_concept_frac"])
        monotone.append(mono)
    out["concept_frac_original_mean"] = float(np.mean(origs))
    out["concept_frac_top_mean"] = float(np.mean(tops))
    out["concept_frac_top_min"] = float(np.min(tops))
    out["monotone_share"] = float(np.mean(monotone))
    if keeps:
        out["keep_frac_top_mean"] = float(np.mean(keeps))
    return out


def to_json(result: SimilarityResult, store: EmbeddingSet, mode: str, alpha_unit: str) -> dict[str, Any]:
    """neighbours.json: per query, the original neighbours and, per concept and α, ids and scores."""

    def block(nb: Neighbours, q: int) -> dict[str, Any]:
        return {"ids": [str(store.ids[r]) for r in nb.rows[q]], "scores": [round(float(s), 6) for s in nb.scores[q]]}

    queries = []
    for q, name in enumerate(result.queries.names):
        per_concept = {}
        for j, concept in enumerate(result.concepts):
            per_concept[concept.key] = [
                {"alpha": float(alpha), "strength": float(result.raw_alphas[j, a]), **block(result.edited[j][a], q)}
                for a, alpha in enumerate(result.alphas)
            ]
        queries.append(
            {
                "id": name,
                "in_store": bool(result.queries.rows[q] >= 0),
                "original": block(result.original, q),
                "concepts": per_concept,
            }
        )
    return {
        "mode": mode,
        "alpha_unit": alpha_unit,
        "alphas": [float(a) for a in result.alphas],
        "concepts": [
            {
                "key": c.key,
                "latent": c.latent,
                "name": c.name,
                "attribute": c.attribute,
                "reference_activation": float(s) if np.isfinite(s) else None,
            }
            for c, s in zip(result.concepts, result.scale)
        ],
        "queries": queries,
        "curves": result.curves,
    }
