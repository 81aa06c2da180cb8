"""`msae stability`: how many decoder atoms two SAE runs (e.g. two seeds) share."""

from __future__ import annotations

import argparse
from pathlib import Path

from msae.errors import MsaeError

ORDER = 45
HELP = "seed stability: match the decoder atoms of two SAEs one to one (Hungarian) and report their cosines"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stability", help=HELP,
        description=f"{HELP}: mean matched cosine and the fraction of matched pairs above --threshold.",
    )
    parser.add_argument("runs", nargs="*", type=Path, metavar="RUN", help="the two SAE directories (or use --sae-a/--sae-b)")
    parser.add_argument("--sae-a", type=Path, default=None, help="first SAE directory")
    parser.add_argument("--sae-b", type=Path, default=None, help="second SAE directory")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="a matched pair counts as shared above this cosine; default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output JSON, e.g. results/eval/<run>/stability.json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.io import write_json_atomic
    from msae.metrics.stability import match_atoms
    from msae.runtime import configure_torch
    from msae.sae import load

    named = [p for p in (args.sae_a, args.sae_b) if p is not None]
    runs = list(args.runs) + named
    if len(runs) != 2:
        raise MsaeError(f"give exactly two SAE runs (positional RUN_A RUN_B or --sae-a/--sae-b), got {len(runs)}")
    configure_torch()
    sae_a, sae_b = (load(p, device="cpu") for p in runs)
    if sae_a.config.d != sae_b.config.d:
        raise MsaeError(f"{runs[0]} has d={sae_a.config.d} but {runs[1]} has d={sae_b.config.d}; atoms are not comparable")
    matching = match_atoms(sae_a.W_dec, sae_b.W_dec)
    result = {
        "sae_a": str(runs[0]), "sae_b": str(runs[1]),
        "n_latents_a": sae_a.config.n_latents, "n_latents_b": sae_b.config.n_latents,
        "matched": int(len(matching.cosines)),
        "mean_cosine": matching.mean_cosine(),
        "threshold": args.threshold,
        "fraction_above": matching.fraction_above(args.threshold),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}: mean matched cosine {result['mean_cosine']:.4f}, "
          f"{result['fraction_above']:.1%} of pairs above {args.threshold}")
    return 0
