"""`msae concepts`: name every latent from a vocabulary, count the valid concepts, draw galleries."""

from __future__ import annotations

import logging
import sys

from msae.commands import Command, single
from msae.config.concepts import ConceptsConfig


def run(config: ConceptsConfig) -> int:
    from msae.concepts import extract_concepts
    from msae.runtime import configure_torch

    logging.basicConfig(level=logging.INFO, format="msae concepts: %(message)s", stream=sys.stderr)
    configure_torch()
    summary = extract_concepts(config)
    print(
        f"msae concepts: {summary['valid_concepts']} valid concepts of {summary['n_latents']} latents -> {config.out}",
        file=sys.stderr,
    )
    return 0


COMMANDS = (
    Command(
        "concepts",
        help="name SAE latents from a vocabulary, count valid concepts, write top-image galleries",
        description=(
            "Name each latent by its best vocabulary terms, measure how often it fires on an image store and "
            "which images fire it most, decide which names are valid concepts (the latent fires, its name beats "
            "random directions, and the name agrees with its top images or their captions), score names against "
            "attr_* ground truth where present, and write names.parquet, latents.parquet, galleries/, "
            "index.html and summary.json."
        ),
        spec=single(ConceptsConfig),
        run=run,
        order=60,
    ),
)
