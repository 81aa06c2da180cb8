"""One run's browser data: the concepts stage's outputs joined with what the SAE does on the image
store the concepts stage used (top and random images, histogram, first Matryoshka level).

The concepts outputs stay the source of truth for names, scores, frequency and validity; the
image statistics are recomputed here because the concepts stage keeps only PNG galleries. The
recomputed firing counts must match latents.parquet's `active_images`, which catches an image
store other than the one the concepts were computed on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from msae.errors import MsaeError
from msae.layout import LATENTS_FILE, NAMES_FILE, SUMMARY_FILE
from msae.report.browser.activity import DEFAULT_BUDGET, LatentActivity, first_level, latent_activity
from msae.store import EmbeddingSet, read_embeddings, require_same_backbone

LATENT_COLUMNS = (
    "latent",
    "name",
    "score",
    "margin",
    "frequency",
    "valid",
    "attribute",
    "distinctness",
    "active_images",
    "agreement_z",
    "caption_rate",
    "caption_p",
    "precision",
)
NAME_COLUMNS = ("latent", "term", "score", "rank")
SUMMARY_KEYS = (
    "n_images",
    "null_threshold",
    "agreement",
    "distinctness",
    "method",
    "rule_min_active",
    "rule_min_agreement_z",
    "rule_caption_alpha",
    "rule_min_caption_rate",
    "rule_null_quantile",
)
LADDER_START = 8  # the pipeline's nesting start: non-nested models are read on the same k ladder


@dataclass
class SaeView:
    """The few things the browser needs from an SAE (the one adapter onto msae.sae)."""

    encode_dense: Callable[[torch.Tensor], torch.Tensor]
    decoder: np.ndarray  # float32 [n, d]: decoder atoms (rows)
    n_latents: int
    nested: bool  # a Matryoshka SAE
    ladder: list[int]  # the k a latent's first level is read on (ascending)
    backbone: dict[str, Any]  # model and pretrained of config.json's `data` block ({} when absent)
    device: torch.device


def load_sae_view(sae_dir: Path, device: str = "cpu") -> SaeView:
    """Load an SAE directory through msae.sae (the only place this package touches it). The
    ladder is a Matryoshka SAE's own nesting, else the default nesting from LADDER_START (8, 16,
    ..., n), so first levels compare across runs."""
    from msae.runtime import resolve_device
    from msae.sae import load
    from msae.sae.variants.matryoshka import default_nesting

    sae = load(sae_dir, device=resolve_device(device))
    data = sae.record.data if sae.record is not None else None
    n = int(sae.config.n_latents)
    nested = sae.kind.nested
    return SaeView(
        encode_dense=sae.encode_dense,
        decoder=sae.W_dec.detach().float().cpu().numpy(),
        n_latents=n,
        nested=nested,
        ladder=sorted(int(k) for k in sae.sparse_levels()) if nested else default_nesting(min(LADDER_START, n), n),
        backbone=data.backbone if data is not None else {},
        device=next(sae.parameters()).device,
    )


@dataclass
class Concepts:
    """The concepts stage's outputs of one run."""

    latents: pd.DataFrame  # latents.parquet, indexed by latent
    terms: pd.DataFrame  # names.parquet, sorted by latent then rank
    summary: dict[str, Any]


def read_concepts(concepts_dir: Path) -> Concepts:
    """latents.parquet, names.parquet and summary.json of a concepts directory, checked."""
    from msae.io import read_frame, read_json_object

    rerun = "run `msae concepts` for this run"
    latents = read_frame(concepts_dir / LATENTS_FILE, LATENT_COLUMNS, rerun)
    terms = read_frame(concepts_dir / NAMES_FILE, NAME_COLUMNS, rerun)
    summary = read_json_object(concepts_dir / SUMMARY_FILE, rerun)
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise MsaeError(f"{concepts_dir / 'summary.json'}: missing key(s) {', '.join(missing)}")
    if latents["latent"].duplicated().any():
        raise MsaeError(f"{concepts_dir / 'latents.parquet'}: a latent id occurs twice")
    return Concepts(
        latents.set_index("latent", drop=False).sort_index(),
        terms.sort_values(["latent", "rank"], kind="stable").reset_index(drop=True),
        summary,
    )


@dataclass
class Check:
    """One comparison of the valid-concept rule, for every latent."""

    rule: str  # which of the three rules
    what: str  # the measured quantity, in words
    op: str  # ">=" or "<="
    threshold: float
    value: np.ndarray  # float64 [n]

    @property
    def passed(self) -> np.ndarray:
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold


def validity_checks(latents: pd.DataFrame, summary: dict[str, Any]) -> list[Check]:
    """The valid-concept rule (msae.concepts.validity) as the comparisons it makes, with the
    numbers and thresholds the concepts stage recorded, so a page can say what passed and by how
    much. A latent is valid when every check passes (export_run verifies that against `valid`)."""

    def column(name: str) -> np.ndarray:
        return latents[name].to_numpy(np.float64)

    quantile = f"{100 * float(summary['rule_null_quantile']):g}th percentile"
    checks = [
        Check("fires", "images it fires on", ">=", float(summary["rule_min_active"]), column("active_images")),
        Check(
            "beats chance",
            f"match_z of the name vs random in-span latents' {quantile}",
            ">=",
            float(summary["null_threshold"]),
            column("distinctness"),
        ),
    ]
    if summary["agreement"] == "captions":
        return checks + [
            Check(
                "agrees with captions",
                "share of top-image captions containing the name",
                ">=",
                float(summary["rule_min_caption_rate"]),
                column("caption_rate"),
            ),
            Check(
                "agrees with captions",
                "binomial p of that share vs the name's base rate",
                "<=",
                float(summary["rule_caption_alpha"]),
                column("caption_p"),
            ),
        ]
    return checks + [
        Check(
            "agrees with images",
            "z of the name's text direction on the top images",
            ">=",
            float(summary["rule_min_agreement_z"]),
            column("agreement_z"),
        )
    ]


@dataclass
class RunExport:
    """Everything one run's latent pages show (arrays indexed by latent id)."""

    concepts: Concepts
    activity: LatentActivity
    ladder: list[int]
    nested: bool
    level: np.ndarray  # int64 [n]: first level (0 = never active)
    checks: list[Check]
    decoder: np.ndarray  # [n, d]
    backbone: dict[str, Any]

    @property
    def alive(self) -> np.ndarray:
        return self.activity.active_count > 0


def _check_same_store(concepts: Concepts, activity: LatentActivity, concepts_dir: Path, images_where: str) -> None:
    """Refuse an image store other than the concepts stage's: same row count, and firing counts
    equal up to float noise (a CPU/GPU difference can flip an activation that is almost 0)."""
    expected = int(concepts.summary["n_images"])
    if expected != activity.n_images:
        raise MsaeError(
            f"{images_where} has {activity.n_images} images but {concepts_dir / 'summary.json'} counts {expected}: "
            "pass the image store given to `msae concepts --images`"
        )
    theirs = concepts.latents["active_images"].to_numpy(np.int64)
    tolerance = max(1, activity.n_images // 1000)
    off = np.flatnonzero(np.abs(theirs - activity.active_count) > tolerance)
    if off.size:
        j = int(off[0])
        raise MsaeError(
            f"{images_where}: latent {j} fires on {int(activity.active_count[j])} images, but "
            f"{concepts_dir / 'latents.parquet'} says {int(theirs[j])} ({off.size} latents differ): "
            "the concepts were computed on another image store or another SAE"
        )


def export_run(
    sae_dir: Path,
    images: Path,
    concepts_dir: Path,
    top: int = 16,
    random: int = 8,
    bins: int = 24,
    seed: int = 0,
    device: str = "cpu",
    budget: int = DEFAULT_BUDGET,
    store: EmbeddingSet | None = None,
) -> RunExport:
    """Join one run's concepts outputs with its SAE's behaviour on the image store `images` (the
    one `msae concepts --images` used; `store` is its content when already read)."""
    view = load_sae_view(sae_dir, device)
    store = read_embeddings(images) if store is None else store
    where = str(images)
    if store.dim != view.decoder.shape[1]:
        raise MsaeError(
            f"{where}: embeddings have dim {store.dim}, the SAE in {sae_dir} expects {view.decoder.shape[1]}"
        )
    if view.backbone.get("model") and view.backbone.get("pretrained"):
        require_same_backbone(store.meta, where, view.backbone, f"the SAE in {sae_dir} was trained on")
    concepts = read_concepts(concepts_dir)
    if len(concepts.latents) != view.n_latents or (concepts.latents.index != np.arange(view.n_latents)).any():
        raise MsaeError(
            f"{concepts_dir / 'latents.parquet'}: needs one row per latent 0..{view.n_latents - 1} of {sae_dir}"
        )
    activity = latent_activity(
        view.encode_dense, store.embeddings, view.n_latents, top, random, bins, seed, budget, view.device
    )
    _check_same_store(concepts, activity, concepts_dir, where)
    checks = validity_checks(concepts.latents, concepts.summary)
    verdict = np.logical_and.reduce([c.passed for c in checks])
    stated = concepts.latents["valid"].to_numpy(bool)
    if (verdict != stated).any():
        j = int(np.flatnonzero(verdict != stated)[0])
        raise MsaeError(
            f"{concepts_dir / 'latents.parquet'}: latent {j}: `valid` is {bool(stated[j])} but its "
            "evidence and summary.json's rule_* thresholds say otherwise (a concepts stage older or "
            "newer than this report? rerun `msae concepts`, or update "
            "msae.report.browser.export.validity_checks)"
        )
    return RunExport(
        concepts=concepts,
        activity=activity,
        ladder=view.ladder,
        nested=view.nested,
        level=first_level(activity.best_rank, view.ladder),
        checks=checks,
        decoder=view.decoder,
        backbone=view.backbone,
    )
