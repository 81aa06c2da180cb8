"""`msae concepts`: name latents from a vocabulary, decide valid concepts, draw galleries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, WithJsonSchema

from msae.config.base import SHELL_WORD, IntList, PathOption, StageConfig, device_option, opt

NAMING, RULE, OUTPUT = "naming", "valid-concept rule", "galleries"
Method = Literal["decoder", "decoder-projection", "activation"]
Gap = Literal["center", "none"]
OPEN_UNIT: dict[str, Any] = {"gt": 0, "lt": 1}  # a quantile or a p-value: strictly between 0 and 1


def _shell_word(value: Path) -> Path:
    if not re.fullmatch(SHELL_WORD, str(value)):
        raise ValueError("must not contain quotes, $, `, \\ or control characters (it goes into a shell command line)")
    return value


ShellSafePath = Annotated[
    PathOption, AfterValidator(_shell_word), WithJsonSchema({"type": "string", "pattern": SHELL_WORD})
]


class ConceptsConfig(StageConfig):
    """Name each latent by its best vocabulary terms, measure how often it fires on an image store
    and which images fire it most, decide which names are valid concepts, score names against
    attr_* ground truth where present."""

    sae: PathOption = opt(help="trained SAE directory (config.json, model.safetensors)")
    vocab: PathOption = opt(help="vocabulary store from `msae embed --source terms` (same backbone as the SAE's data)")
    images: ShellSafePath = opt(help="image embedding store (path, optional text and attr_* columns)")
    captions: PathOption | None = opt(
        None, "caption store with the image ids; default: the image store's text column if any"
    )
    out: PathOption = opt(help="output directory, e.g. results/concepts/<run>/")
    method: Method = opt(
        "decoder",
        "decoder: cosine of the latent's decoder atom with the terms; decoder-projection: "
        "the term's displacement along the atom (for vocabularies with many words the backbone never "
        "learned); activation: the latent's activation on the encoded terms (crosses the image/text "
        "modality gap)",
        group=NAMING,
    )
    gap: Gap = opt(
        "center",
        "center: subtract the vocabulary's mean embedding (modality gap handled); none: the "
        "official code's raw terms vs W_dec/scale + training mean",
        group=NAMING,
    )
    top_terms: int = opt(5, "terms kept per latent in names.parquet", ge=1, group=NAMING)
    top_images: int = opt(16, "top-activating images per latent", ge=1, group=NAMING)
    min_active: int = opt(10, "valid only if the latent fires on at least this many images", ge=1, group=RULE)
    null_quantile: float = opt(
        0.99,
        "valid only if the name's match_z (its match with the latent, standardised per "
        "term over random latents drawn inside the data's span) reaches this quantile of "
        "random in-span latents'",
        **OPEN_UNIT,
        group=RULE,
    )
    null_samples: int = opt(
        1000, "random in-span latents per family (as many again set the threshold)", ge=10, group=RULE
    )
    min_agreement_z: float = opt(
        3.0,
        "without captions: the name's text direction must separate the top images from "
        "random ones by this many standard deviations",
        group=RULE,
    )
    caption_alpha: float = opt(
        0.01,
        "with captions: the name must occur in the top captions above its base rate, binomial p <= this",
        **OPEN_UNIT,
        group=RULE,
    )
    min_caption_rate: float = opt(
        0.5,
        "with captions: the name must occur in at least this share of the top images' captions",
        ge=0,
        le=1,
        group=RULE,
    )
    gallery_limit: int = opt(
        100, "at most this many valid concepts get a gallery page (most frequent first)", ge=0, group=OUTPUT
    )
    latents: IntList = opt((), "also draw these latents' pages, e.g. 3,17", metavar="IDS", group=OUTPUT)
    seed: int = opt(0, "seed of the random directions", ge=0)
    device: str = device_option()
