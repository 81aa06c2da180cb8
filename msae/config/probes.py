"""`msae probe similarity | bias`: the paper's downstream uses of an SAE.

An edit changes one dense latent z_c and keeps the SAE residual: x' = x + (z'_c - z_c) W_dec[c] /
scale (= x + decode(z') - decode(z)).
"""

from __future__ import annotations

from typing import Literal

from msae.config.base import PathOption, StageConfig, StrList, device_option, opt

EditMode = Literal["set", "add", "scale"]
BiasMode = Literal["remove", "set", "add", "scale"]
AlphaUnit = Literal["p99", "raw"]
RankBy = Literal["abs_dp", "flip_rate"]
FLOAT_LIST = r"^\s*-?[0-9.eE+-]+(\s*,\s*-?[0-9.eE+-]+)*\s*$"


class ProbeCommon(StageConfig):
    """Options of both probes."""

    sae: PathOption = opt(help="trained SAE directory (results/sae/<run>)")
    concepts: PathOption | None = opt(
        None, "latents.parquet of `msae concepts`, to give concepts by name (and know their attribute)"
    )
    alpha_unit: AlphaUnit = opt(
        "p99",
        "unit of strengths for modes set/add: p99 = multiples of the latent's "
        "99th-percentile activation where it is active, raw = SAE latent units",
    )
    seed: int = opt(0, "random seed (query sampling, classifier)", ge=0)
    device: str = device_option()
    out: PathOption = opt(help="output directory, e.g. results/probes/<run>/<probe>")


class SimilarityConfig(ProbeCommon):
    """Nearest neighbours of queries after setting a concept's strength (concept-controlled search)."""

    embeddings: PathOption = opt(help="embedding store searched (and holding the query ids)")
    queries: str | None = opt(
        None, "query ids: 'id1,id2', '@FILE' (one id per line) or 'random:N' (N store items, seeded)"
    )
    query_images: str = opt("", "comma-separated image files used as extra queries, embedded with the store's backbone")
    concept: StrList = opt(
        help="concept to edit: a latent id, a name from --concepts, or auto:N[:ATTRIBUTE] = the N "
        "best-scored valid concepts with distinct names, values of ATTRIBUTE first (repeatable)",
        metavar="NAME_OR_ID",
        min_length=1,
    )
    alphas: str = opt(
        "0,0.5,1,2,4", "strength grid, increasing (see --alpha-unit; mode scale: plain factors)", pattern=FLOAT_LIST
    )
    mode: EditMode = opt("set", "edit: set z_c = alpha, add alpha to z_c, or multiply z_c by alpha")
    top: int = opt(8, "neighbours per query and strength", ge=1)
    image_root: PathOption | None = opt(None, "folder that relative `path` values of the store are under")
    max_strips: int = opt(16, "draw strips for the first N queries only (all concepts each)", ge=0)


class BiasConfig(ProbeCommon):
    """Rank concepts by how much intervening on them moves a linear classifier (counterfactual bias)."""

    train: PathOption = opt(help="embedding store the classifier is trained on")
    test: PathOption = opt(help="embedding store the interventions are measured on")
    target_column: str = opt(help="label column, e.g. attr_shape, label or attr_Male", min_length=1)
    positive: str | None = opt(
        None, "value of --target-column counted as positive; omit for a 0/1 (or -1/1, true/false) column"
    )
    candidates: StrList = opt(
        (),
        "concepts to test (repeatable); default: every valid latent of --concepts, else "
        "every latent active on at least --min-frequency of the test items",
        metavar="NAME_OR_ID",
    )
    min_frequency: float = opt(
        0.01, "activity threshold for candidates when neither --candidates nor --concepts", gt=0, le=1
    )
    mode: BiasMode = opt("remove", "intervention: remove (z_c = 0), set z_c = strength, add strength, or scale by it")
    strength: float = opt(0.0, "strength for set/add/scale (see --alpha-unit)")
    spurious: str | None = opt(
        None,
        "attribute value defining correlated/anti-correlated test items, e.g. "
        "attr_color=red; default: the attr_* value whose rate differs most between the "
        "training classes",
        metavar="COLUMN=VALUE",
        pattern=r"^[^=]+=.+$",
    )
    rank_by: RankBy = opt("abs_dp", "rank concepts by mean |change of p| or by flip rate, over all test items")
    c: float = opt(1.0, "inverse L2 strength of the logistic regression (standardised inputs)", gt=0, alias="C")
    plot_top: int = opt(20, "concepts shown in bias.png", ge=1)
