"""Counterfactual bias analysis (the paper's CelebA experiment; docs/paper.md).

A linear classifier (logistic regression, as the paper's single-layer probe) is trained on raw
embeddings for a binary target. For each candidate concept we intervene on every test item's
dense latent (remove it, or set/add/scale its strength; residual kept) and measure how the
predicted probability moves and how many predictions flip. A concept the classifier leans on
without being the target (a spurious feature) shows a large effect.

Because the classifier is linear and the edit is x' = x + δ·atom, the new logit is exactly
logit(x) + δ·(w·atom): every candidate is scored for every item with one matrix product, no
decoding (tests check this against decoding and scikit-learn's own predictions).

Groups: where the training store shows which attribute value co-occurs with the target (the
world's bias_train: the bias shape mostly in the bias colour), test items are split into
`correlated` (follow the training association) and `anti` (break it); effects are reported
overall and per group.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from msae.config.probes import BiasMode, RankBy
from msae.errors import MsaeError
from msae.probes.concepts import Concept
from msae.probes.intervention import ALPHA_UNITS, activation_scale, dense_columns, edited_value, raw_atoms
from msae.store import EmbeddingSet

BIAS_MODES = get_args(BiasMode)
RANK_BY = get_args(RankBy)
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", "-1"}


@dataclass
class LinearProbe:
    """p(y=1|x) = sigmoid(x·weight + bias) on RAW embeddings (standardisation folded in)."""

    weight: np.ndarray  # [d] float64
    bias: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias

    def proba(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(x))


def sigmoid(t: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    t = np.asarray(t, dtype=np.float64)
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_target(store: EmbeddingSet, column: str, positive: str | None, where: str) -> np.ndarray:
    """0/1 labels from a column: `== positive`, or a column that is already binary (0/1, true/false,
    CelebA's -1/1)."""
    if column not in store.columns:
        have = ", ".join(map(str, store.columns.columns)) or "none"
        raise MsaeError(f"{where}: no column {column!r} for --target-column (has: {have})")
    values = store.columns[column]
    if values.isna().any():
        raise MsaeError(f"{where}: column {column!r} has {int(values.isna().sum())} missing value(s)")
    text = values.astype(str).str.strip().str.lower()
    if positive is not None:
        return (text == str(positive).strip().lower()).to_numpy().astype(np.int64)
    unknown = sorted(set(text) - _TRUE - _FALSE)
    if unknown:
        raise MsaeError(
            f"{where}: column {column!r} is not binary (values include {', '.join(unknown[:5])}); give --positive VALUE"
        )
    return text.isin(_TRUE).to_numpy().astype(np.int64)


def require_two_classes(y: np.ndarray, column: str, positive: str | None, where: str) -> None:
    """A classifier needs both classes in its training data."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        which = f"== {positive!r}" if positive is not None else "positive"
        raise MsaeError(f"{where}: column {column!r} has one class only ({n_pos} of {len(y)} rows {which})")


def fit_probe(x: np.ndarray, y: np.ndarray, c: float = 1.0, seed: int = 0, max_iter: int = 2000) -> LinearProbe:
    """L2 logistic regression on standardised features (so C means the same for any backbone)."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    model.fit((x - mean) / std, y)
    weight = model.coef_[0] / std
    return LinearProbe(weight=weight, bias=float(model.intercept_[0] - mean @ weight))


@dataclass(frozen=True)
class Spurious:
    """The attribute value that co-occurs with the target in training (rates: P(value | y)).

    `names` are the concept names that stand for it and `attribute` the attribute a concept must
    belong to ("" for any): the value itself within its attribute (attr_color=red: a concept
    "red" of attribute color), or, for a yes/no column such as CelebA's attr_Blond_Hair, the
    column's own name ("blond hair", and its words no other attr_* column uses: "blond")."""

    column: str
    value: str
    rate_positive: float
    rate_negative: float
    inferred: bool
    names: tuple[str, ...] = ()
    attribute: str = ""

    def correlated(self, values: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Items following the training association (e.g. a star in red, a non-star not in red)."""
        has = np.asarray(values).astype(str) == self.value
        follows_positive = self.rate_positive >= self.rate_negative
        return np.where(y == 1, has == follows_positive, has != follows_positive)


def _words(column: str) -> list[str]:
    """attr_Blond_Hair -> ["blond", "hair"]."""
    return [w for w in re.split(r"[^0-9a-z]+", column[len("attr_") :].lower()) if w]


def _is_yes_no(values: np.ndarray) -> bool:
    """A column of presence flags (yes/no, 1/0, true/false, CelebA's 1/-1), both present."""
    lowered = {str(v).strip().lower() for v in np.unique(values)}
    return len(lowered) == 2 and lowered <= _TRUE | _FALSE and bool(lowered & _TRUE)


def concept_names(store: EmbeddingSet, column: str, value: str) -> tuple[tuple[str, ...], str]:
    """(names, attribute) of the concepts that stand for `column=value` (see Spurious)."""
    if not _is_yes_no(store.columns[column].astype(str).to_numpy()):
        return (" ".join(value.lower().split()),), column[len("attr_") :]
    words = _words(column)
    elsewhere = {
        w for other in store.columns.columns if other.startswith("attr_") and other != column for w in _words(other)
    }
    return tuple(dict.fromkeys([" ".join(words), *(w for w in words if w not in elsewhere and len(w) >= 3)])), ""


def spurious_from(store: EmbeddingSet, y: np.ndarray, column: str, value: str, inferred: bool) -> Spurious:
    """Measure P(value | y) in the training store for a given attribute value."""
    if column not in store.columns:
        raise MsaeError(f"--spurious: the training store has no column {column!r}")
    has = store.columns[column].astype(str).to_numpy() == value
    if not has.any():
        raise MsaeError(f"--spurious: value {value!r} never occurs in column {column!r} of the training store")
    names, attribute = concept_names(store, column, value)
    return Spurious(column, value, float(has[y == 1].mean()), float(has[y == 0].mean()), inferred, names, attribute)


def infer_spurious(store: EmbeddingSet, y: np.ndarray, target_column: str) -> Spurious | None:
    """The attribute value whose rate differs most between the two classes: the planted correlation
    when there is one. The target's own column, and any value that is the target itself (e.g.
    attr_shape=star when the target column is `label`), are skipped. A yes/no column is one
    attribute, its presence: only its "yes" value is a candidate (its "no" splits the items the
    same way, and would win a tie while no concept is named "no")."""
    best: tuple[float, str, str] | None = None
    for column in store.columns.columns:
        if not column.startswith("attr_") or column == target_column:
            continue
        values = store.columns[column].astype(str).to_numpy()
        candidates = np.unique(values)
        if _is_yes_no(values):
            candidates = np.asarray([v for v in candidates if v.strip().lower() in _TRUE])
        for value in candidates:
            has = values == value
            if np.array_equal(has, y == 1):
                continue
            gap = abs(has[y == 1].mean() - has[y == 0].mean())
            if best is None or gap > best[0]:
                best = (float(gap), column, str(value))
    return None if best is None else spurious_from(store, y, best[1], best[2], inferred=True)


def check_options(mode: str, rank_by: str, alpha_unit: str) -> None:
    """Refuse unknown option values (called before any data is loaded)."""
    for flag, value, allowed in (
        ("--mode", mode, BIAS_MODES),
        ("--rank-by", rank_by, RANK_BY),
        ("--alpha-unit", alpha_unit, ALPHA_UNITS),
    ):
        if value not in allowed:
            raise MsaeError(f"{flag} {value!r}: expected one of {', '.join(allowed)}")


@dataclass
class BiasResult:
    """Per-candidate effects, ranked; `groups` maps a group name to a boolean mask of test items."""

    concepts: list[Concept]  # ranked, best first
    strengths: np.ndarray  # [C]
    effects: dict[str, dict[str, np.ndarray]]  # group -> metric -> [C]
    groups: dict[str, np.ndarray]
    probe: LinearProbe
    accuracy: dict[str, float]
    spurious: Spurious | None
    skipped: list[Concept]


def intervention_effects(
    probe: LinearProbe,
    x: np.ndarray,
    z: np.ndarray,
    atoms: np.ndarray,
    mode: str,
    strengths: np.ndarray,
    groups: dict[str, np.ndarray],
    chunk: int = 256,
) -> dict[str, dict[str, np.ndarray]]:
    """For each candidate (column of z), the mean Δp, mean |Δp| and flip rate per group."""
    logit = probe.logits(x)
    p = sigmoid(logit)
    pred = p >= 0.5
    proj = atoms @ probe.weight  # [C]
    out: dict[str, dict[str, list[Any]]] = {g: {"dp": [], "abs_dp": [], "flip_rate": []} for g in groups}
    for start in range(0, z.shape[1], chunk):
        zc = z[:, start : start + chunk].astype(np.float64)
        new = np.stack([edited_value(zc[:, j], mode, strengths[start + j]) for j in range(zc.shape[1])], axis=1)
        p_new = sigmoid(logit[:, None] + (new - zc) * proj[None, start : start + chunk])
        dp = p_new - p[:, None]
        flips = (p_new >= 0.5) != pred[:, None]
        for g, mask in groups.items():
            out[g]["dp"].append(dp[mask].mean(axis=0))
            out[g]["abs_dp"].append(np.abs(dp[mask]).mean(axis=0))
            out[g]["flip_rate"].append(flips[mask].mean(axis=0))
    return {g: {k: np.concatenate(v) for k, v in metrics.items()} for g, metrics in out.items()}


def analyse(
    sae: Any,
    train: EmbeddingSet,
    test: EmbeddingSet,
    y_train: np.ndarray,
    y_test: np.ndarray,
    candidates: Sequence[Concept],
    mode: str = "remove",
    strength: float = 0.0,
    alpha_unit: str = "p99",
    spurious: Spurious | None = None,
    rank_by: str = "abs_dp",
    c: float = 1.0,
    seed: int = 0,
) -> BiasResult:
    """Train the probe, intervene on each candidate for every test item, rank by effect."""
    check_options(mode, rank_by, alpha_unit)
    if not candidates:
        raise MsaeError("no candidate concepts to test (give --candidates, or --concepts with valid latents)")
    probe = fit_probe(train.embeddings, y_train, c=c, seed=seed)
    latents = [k.latent for k in candidates]
    z = dense_columns(sae, test.embeddings, latents, desc="encode test")
    edit_mode, edit_strength = ("set", 0.0) if mode == "remove" else (mode, strength)
    if mode in ("set", "add") and alpha_unit == "p99":
        strengths = activation_scale(z) * edit_strength
    else:
        strengths = np.full(len(candidates), float(edit_strength))
    keep = np.isfinite(strengths)
    skipped = [k for k, ok in zip(candidates, keep) if not ok]
    candidates = [k for k, ok in zip(candidates, keep) if ok]
    if not candidates:
        raise MsaeError("no candidate concept is ever active on the test store; nothing to intervene on")
    z, strengths = z[:, keep], strengths[keep]
    groups = {"all": np.ones(len(y_test), dtype=bool)}
    if spurious is not None and spurious.column in test.columns:
        corr = spurious.correlated(test.columns[spurious.column].to_numpy(), y_test)
        groups["correlated"], groups["anti"] = corr, ~corr
    groups = {g: m for g, m in groups.items() if m.any()}
    effects = intervention_effects(
        probe, test.embeddings, z, raw_atoms(sae, latents)[keep], edit_mode, strengths, groups
    )
    order = np.lexsort((np.asarray([k.latent for k in candidates]), -effects["all"][rank_by]))
    pred = probe.proba(test.embeddings) >= 0.5
    accuracy = {"train_acc": float(np.mean((probe.proba(train.embeddings) >= 0.5) == y_train))}
    accuracy.update(
        {f"test_acc_{g}" if g != "all" else "test_acc": float(np.mean(pred[m] == y_test[m])) for g, m in groups.items()}
    )
    return BiasResult(
        concepts=[candidates[i] for i in order],
        strengths=strengths[order],
        effects={g: {k: v[order] for k, v in metrics.items()} for g, metrics in effects.items()},
        groups=groups,
        probe=probe,
        accuracy=accuracy,
        spurious=spurious,
        skipped=skipped,
    )


def spurious_index(result: BiasResult) -> int | None:
    """Rank position of the best-ranked concept naming the spurious value (or None)."""
    found = result.spurious
    if found is None:
        return None
    for i, concept in enumerate(result.concepts):
        name = " ".join(concept.name.lower().replace("_", " ").split())
        if name in found.names and (not found.attribute or concept.attribute == found.attribute):
            return i
    return None


def summary(result: BiasResult, n_train: int, n_test: int, rank_by: str) -> dict[str, float]:
    """Flat numbers: classifier accuracy, the top effect, and the spurious concept's rank/effects."""
    out: dict[str, float] = {
        "n_train": float(n_train),
        "n_test": float(n_test),
        "n_candidates": float(len(result.concepts)),
    }
    out.update(result.accuracy)
    for g, metrics in result.effects.items():
        suffix = "" if g == "all" else f"_{g}"
        for k in ("abs_dp", "flip_rate"):
            out[f"top_{k}{suffix}"] = float(metrics[k][0])
    if result.spurious is not None:
        out["spurious_train_gap"] = result.spurious.rate_positive - result.spurious.rate_negative
    i = spurious_index(result)
    if i is None:
        return out
    spurious_concept = result.concepts[i]
    same_attr = [j for j, k in enumerate(result.concepts) if k.attribute == spurious_concept.attribute]
    out["spurious_rank"] = float(i + 1)
    out["spurious_rank_in_attribute"] = float(same_attr.index(i) + 1)
    for g, metrics in result.effects.items():
        suffix = "" if g == "all" else f"_{g}"
        for k in ("dp", "abs_dp", "flip_rate"):
            out[f"spurious_{k}{suffix}"] = float(metrics[k][i])
    top = float(result.effects["all"][rank_by][0])
    if top > 0:  # 1 when the spurious concept leads; near 0 when it does not stand out
        out["spurious_effect_vs_top"] = float(result.effects["all"][rank_by][i]) / top
    return out


def to_json(
    result: BiasResult, target: dict[str, Any], mode: str, strength: float, alpha_unit: str, rank_by: str
) -> dict[str, Any]:
    """bias.json: the setup, the classifier, the spurious association and the ranked concepts."""
    ranked = []
    for r, concept in enumerate(result.concepts):
        ranked.append(
            {
                "rank": r + 1,
                "latent": concept.latent,
                "name": concept.name,
                "attribute": concept.attribute,
                "strength": float(result.strengths[r]),
                **{g: {k: float(v[r]) for k, v in metrics.items()} for g, metrics in result.effects.items()},
            }
        )
    spurious = None
    if result.spurious is not None:
        s = result.spurious
        spurious = {
            "column": s.column,
            "value": s.value,
            "rate_positive": s.rate_positive,
            "rate_negative": s.rate_negative,
            "inferred": s.inferred,
            "concept_names": list(s.names),
        }
    return {
        "target": target,
        "mode": mode,
        "strength": float(strength),
        "alpha_unit": alpha_unit,
        "rank_by": rank_by,
        "classifier": {"kind": "logistic_regression_l2", **result.accuracy},
        "spurious": spurious,
        "group_sizes": {g: int(m.sum()) for g, m in result.groups.items()},
        "skipped_never_active": [{"latent": k.latent, "name": k.name} for k in result.skipped],
        "concepts": ranked,
    }


def candidates_by_frequency(sae: Any, test: EmbeddingSet, min_frequency: float, n_latents: int) -> list[Concept]:
    """Every latent active (dense activation > 0) on at least `min_frequency` of the test items."""
    z = dense_columns(sae, test.embeddings, list(range(n_latents)), desc="encode test (all latents)")
    frequency = (z > 0).mean(axis=0)
    return [Concept(int(j), f"latent{j}", "") for j in np.flatnonzero(frequency >= min_frequency)]


def spurious_arg(text: str | None) -> tuple[str, str] | None:
    """'attr_color=red' -> ('attr_color', 'red')."""
    if text is None:
        return None
    column, sep, value = text.partition("=")
    if not sep or not column.strip() or not value.strip():
        raise MsaeError(f"--spurious {text!r}: expected COLUMN=VALUE, e.g. attr_color=red")
    return column.strip(), value.strip()
