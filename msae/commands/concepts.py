"""`msae concepts`: name every latent from a vocabulary, count the valid concepts, draw galleries."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

ORDER = 60
HELP = "name SAE latents from a vocabulary, count valid concepts, write top-image galleries"


def _latent_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated latent ids such as 3,17, got {text!r}") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "concepts",
        help=HELP,
        description=(
            "Name each latent by its best vocabulary terms, measure how often it fires on an image store and "
            "which images fire it most, decide which names are valid concepts (the latent fires, its name beats "
            "random directions, and the name agrees with its top images or their captions), score names against "
            "attr_* ground truth where present, and write names.parquet, latents.parquet, galleries/, "
            "index.html and summary.json."
        ),
    )
    parser.add_argument("--sae", required=True, type=Path, help="trained SAE directory (config.json, model.safetensors)")
    parser.add_argument("--vocab", required=True, type=Path,
                        help="vocabulary store from `msae embed --source terms` (same backbone as the SAE's data)")
    parser.add_argument("--images", required=True, type=Path, help="image embedding store (path, optional text and attr_* columns)")
    parser.add_argument("--captions", type=Path, default=None,
                        help="caption store with the image ids; default: the image store's text column if any")
    parser.add_argument("--out", required=True, type=Path, help="output directory, e.g. results/concepts/<run>/")
    parser.add_argument("--method", choices=("decoder", "decoder-projection", "activation"), default="decoder",
                        help="decoder: cosine of the latent's decoder atom with the terms; decoder-projection: the "
                             "term's displacement along the atom (for vocabularies with many words the backbone never "
                             "learned); activation: the latent's activation on the encoded terms (crosses the "
                             "image/text modality gap); default: %(default)s")
    parser.add_argument("--gap", choices=("center", "none"), default="center",
                        help="center: subtract the vocabulary's mean embedding (modality gap handled); none: the "
                             "official code's raw terms vs W_dec/scale + training mean; default: %(default)s")
    parser.add_argument("--top-terms", type=int, default=5, help="terms kept per latent in names.parquet; default: %(default)s")
    parser.add_argument("--top-images", type=int, default=16, help="top-activating images per latent; default: %(default)s")
    parser.add_argument("--min-active", type=int, default=10,
                        help="valid only if the latent fires on at least this many images; default: %(default)s")
    parser.add_argument("--null-quantile", type=float, default=0.99,
                        help="valid only if the name's match (decoder: score; activation: z-score over the vocabulary) beats this "
                             "quantile of random directions'; default: %(default)s")
    parser.add_argument("--null-samples", type=int, default=1000, help="random directions for that null; default: %(default)s")
    parser.add_argument("--min-agreement-z", type=float, default=3.0,
                        help="without captions: the name's text direction must separate the top images from random ones "
                             "by this many standard deviations; default: %(default)s")
    parser.add_argument("--caption-alpha", type=float, default=0.01,
                        help="with captions: the name must occur in the top captions above its base rate, binomial "
                             "p <= this; default: %(default)s")
    parser.add_argument("--min-caption-rate", type=float, default=0.5,
                        help="with captions: the name must occur in at least this share of the top images' captions; "
                             "default: %(default)s")
    parser.add_argument("--gallery-limit", type=int, default=100,
                        help="at most this many valid concepts get a gallery page (most frequent first); default: %(default)s")
    parser.add_argument("--latents", type=_latent_list, default=[], metavar="IDS",
                        help="also draw these latents' pages, e.g. 3,17")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random directions; default: %(default)s")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from msae.concepts import ValidityRule, extract_concepts
    from msae.runtime import configure_torch

    logging.basicConfig(level=logging.INFO, format="msae concepts: %(message)s", stream=sys.stderr)
    configure_torch()
    rule = ValidityRule(min_active=args.min_active, null_quantile=args.null_quantile,
                        min_agreement_z=args.min_agreement_z, caption_alpha=args.caption_alpha,
                        min_caption_rate=args.min_caption_rate)
    summary = extract_concepts(
        args.sae, args.vocab, args.images, args.out, captions_path=args.captions, method=args.method, gap=args.gap,
        top_terms=args.top_terms, top_images=args.top_images, rule=rule, null_samples=args.null_samples,
        gallery_limit=args.gallery_limit, latents=args.latents, device=args.device, seed=args.seed,
    )
    print(f"msae concepts: {summary['valid_concepts']} valid concepts of {summary['n_latents']} latents "
          f"-> {args.out}", file=sys.stderr)
    return 0
