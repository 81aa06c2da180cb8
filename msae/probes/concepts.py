"""Turn what the user types (a latent id or a concept name) into SAE latents.

Names come from the concepts stage's `latents.parquet` (latent, name, score, margin, frequency,
valid, attribute). A name can label several latents when a feature splits; we take the valid one
with the best score, since that is the latent whose top images the name describes best.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msae.errors import MsaeError

REQUIRED_COLUMNS = ("latent", "name", "valid")


@dataclass(frozen=True)
class Concept:
    """One SAE latent used as a concept. `attribute` is the world attribute its name is a value of
    (e.g. name "red", attribute "color"), or "" when unknown: ground-truth scores need it."""

    latent: int
    name: str
    attribute: str = ""

    @property
    def label(self) -> str:
        """Name shown in plots: the name and the latent id, since names can repeat across SAEs."""
        return f"{self.name} (#{self.latent})"

    @property
    def key(self) -> str:
        """A JSON/metric-safe key: lower-case words joined by '_'."""
        return re.sub(r"[^0-9a-z]+", "_", self.name.lower()).strip("_") or f"latent{self.latent}"


def load_latent_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check a concepts `latents.parquet`."""
    p = Path(path)
    if not p.exists():
        raise MsaeError(f"{p}: concepts file not found (expected the latents.parquet of msae concepts)")
    try:
        table = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise MsaeError(f"{p}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise MsaeError(f"{p}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})")
    table = table.copy()
    table["latent"] = table["latent"].astype(np.int64)
    table["name"] = table["name"].fillna("").astype(str)
    table["valid"] = table["valid"].fillna(False).astype(bool)
    table["attribute"] = table["attribute"].fillna("").astype(str) if "attribute" in table else ""
    table["score"] = table["score"].astype(float) if "score" in table else 0.0
    return table


def _from_row(row: pd.Series) -> Concept:
    if bool(row["valid"]) and row["name"]:
        return Concept(int(row["latent"]), str(row["name"]), str(row["attribute"]))
    return Concept(int(row["latent"]), f"latent{int(row['latent'])}", "")


def _by_id(latent: int, table: pd.DataFrame | None) -> Concept:
    if table is not None:
        rows = table[table["latent"] == latent]
        if len(rows):
            return _from_row(rows.iloc[0])
    return Concept(latent, f"latent{latent}", "")


def _by_name(name: str, table: pd.DataFrame) -> Concept:
    wanted = name.strip().lower()
    rows = table[(table["name"].str.strip().str.lower() == wanted) & table["valid"]]
    if rows.empty:
        known = sorted(set(table.loc[table["valid"], "name"]))
        shown = ", ".join(known[:30]) + (f" (and {len(known) - 30} more)" if len(known) > 30 else "")
        raise MsaeError(f"--concept {name!r}: no valid latent has this name (valid names: {shown or 'none'})")
    return _from_row(rows.sort_values(["score", "latent"], ascending=[False, True]).iloc[0])


AUTO_SPEC = re.compile(r"auto:(\d+)(?::(\w+))?")


def auto_concepts(table: pd.DataFrame, n_latents: int, count: int, attribute: str = "") -> list[Concept]:
    """The `count` best-scored valid concepts with distinct names, those naming a value of
    `attribute` first; the most frequent latents when a run has no valid concept. This lets one
    pipeline setting pick meaningful concepts for every run, whose names differ run to run."""
    table = table[table["latent"] < n_latents]
    valid = table[table["valid"] & (table["name"] != "")]
    preferred = valid["attribute"] == attribute if attribute else pd.Series(False, index=valid.index)
    ordered = valid.assign(_pref=preferred).sort_values(["_pref", "score", "latent"], ascending=[False, False, True])
    ordered = ordered.drop_duplicates("name")
    if ordered.empty and "frequency" in table:
        ordered = table.sort_values(["frequency", "latent"], ascending=[False, True])
    return [_from_row(row) for _, row in ordered.head(count).iterrows()]


def resolve_concepts(specs: Sequence[str], table: pd.DataFrame | None, n_latents: int) -> list[Concept]:
    """Map each spec (an integer latent id, a name looked up in `table`, or `auto:N[:attribute]`,
    see auto_concepts) to Concepts."""
    if not specs:
        raise MsaeError("--concept: give at least one concept (a latent id, a name or auto:N)")
    concepts: list[Concept] = []
    for spec in specs:
        text = str(spec).strip()
        auto = AUTO_SPEC.fullmatch(text)
        if auto:
            if table is None:
                raise MsaeError(f"--concept {text}: auto needs --concepts latents.parquet")
            picked = auto_concepts(table, n_latents, int(auto.group(1)), auto.group(2) or "")
            if not picked:
                raise MsaeError(f"--concept {text}: the concepts table has no latent to pick")
            concepts.extend(c for c in picked if all(c.latent != o.latent for o in concepts))
            continue
        if re.fullmatch(r"\d+", text):
            latent = int(text)
            if latent >= n_latents:
                raise MsaeError(f"--concept {text}: latent id out of range (the SAE has {n_latents} latents)")
            concept = _by_id(latent, table)
        elif table is None:
            raise MsaeError(
                f"--concept {text!r}: a concept name needs --concepts latents.parquet (or give a latent id)"
            )
        else:
            concept = _by_name(text, table)
            if concept.latent >= n_latents:
                raise MsaeError(
                    f"--concepts: latent {concept.latent} ({text}) is out of range for an SAE of {n_latents} latents"
                )
        if any(c.latent == concept.latent for c in concepts):
            raise MsaeError(f"--concept {text!r}: latent {concept.latent} was already given")
        concepts.append(concept)
    return concepts


def valid_concepts(table: pd.DataFrame, n_latents: int) -> list[Concept]:
    """Every valid named latent of the table, in latent order."""
    rows = table[table["valid"] & (table["latent"] < n_latents)].sort_values("latent")
    return [_from_row(row) for _, row in rows.iterrows()]
