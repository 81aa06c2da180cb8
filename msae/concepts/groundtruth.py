"""Score names against known attributes (`attr_*` columns of the image store, e.g. the world's).

A latent named with an attribute value (e.g. "red", a value of `color`) is *precise* to the
degree its top images really have that value: precision = the fraction of its top images whose
`attr_color` contains "red" as a whole word or phrase. Whole-word containment matters for
multi-word values: a latent named "top" that fires on "top left", "top" and "top right" images is
a correct "top" (the word the captions use), not a wrong one. Coverage (recall) of an attribute = the fraction of its values that name at
least one valid latent. Values are matched case-insensitively; a value shared by two attributes is
credited to the first attribute column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def attribute_values(columns: pd.DataFrame) -> dict[str, list[str]]:
    """attribute -> its distinct lower-case values present in the store, in column order."""
    out: dict[str, list[str]] = {}
    for col in columns.columns:
        if col.startswith("attr_"):
            vals = columns[col].dropna().astype(str).str.lower().unique().tolist()
            out[col[len("attr_") :]] = sorted(vals)
    return out


def name_attributes(names: Sequence[str], values: dict[str, list[str]]) -> list[str]:
    """The attribute each name is a value of, or '' when it is none."""
    lookup: dict[str, str] = {}
    for attr, vals in values.items():
        for v in vals:
            lookup.setdefault(v, attr)
    return [lookup.get(str(n).lower(), "") for n in names]


def top_image_precision(
    names: Sequence[str], attributes: Sequence[str], top_images: np.ndarray, columns: pd.DataFrame
) -> np.ndarray:
    """Per latent: the fraction of its top images whose attribute equals its name (NaN when the
    name is no attribute value or the latent has no top image)."""
    out = np.full(len(names), np.nan)
    padded = {
        a: np.array([f" {' '.join(str(v).lower().split())} " for v in columns[f"attr_{a}"]])
        for a in set(attributes)
        if a
    }
    for j, (name, attr) in enumerate(zip(names, attributes)):
        picks = top_images[j][top_images[j] >= 0]
        if attr and len(picks):
            key = f" {' '.join(str(name).lower().split())} "
            out[j] = float(np.mean([key in value for value in padded[attr][picks]]))
    return out


def score_names(
    names: Sequence[str], valid: np.ndarray, top_images: np.ndarray, columns: pd.DataFrame
) -> tuple[list[str], np.ndarray, dict[str, float]]:
    """Attributes and precision per latent, and summary numbers over the valid latents:
    named_precision (mean), named_precision_above_half (share > 0.5), named_attribute_latents,
    coverage_<attr>, valid_<attr>, coverage_mean; named_precision_all is the mean over every latent
    named with an attribute value, valid or not (what the validity rule filters from). Empty
    summary when there is no attribute."""
    values = attribute_values(columns)
    attributes = name_attributes(names, values)
    precision = top_image_precision(names, attributes, top_images, columns)
    if not values:
        return attributes, precision, {}
    scored = np.array([bool(a) for a in attributes]) & ~np.isnan(precision)
    chosen = np.asarray(valid, dtype=bool) & scored
    summary: dict[str, float] = {"named_attribute_latents": int(chosen.sum())}
    if scored.any():
        summary["named_precision_all"] = float(precision[scored].mean())
    if chosen.any():
        summary["named_precision"] = float(precision[chosen].mean())
        summary["named_precision_above_half"] = float((precision[chosen] > 0.5).mean())
    coverages = []
    for attr, vals in values.items():
        named = {str(names[int(j)]).lower() for j in np.flatnonzero(chosen) if attributes[int(j)] == attr}
        coverage = len(named & set(vals)) / len(vals) if vals else 0.0
        summary[f"coverage_{attr}"] = coverage
        summary[f"valid_{attr}"] = int(sum(1 for j in np.flatnonzero(chosen) if attributes[j] == attr))
        coverages.append(coverage)
    summary["coverage_mean"] = float(np.mean(coverages))
    return attributes, precision, summary
