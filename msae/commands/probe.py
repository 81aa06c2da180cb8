"""`msae probe similarity|bias`: the paper's downstream uses of an SAE (§5.2, §5.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 70
HELP = "downstream probes: concept-controlled similarity search, counterfactual bias analysis"

EDIT_NOTE = (
    "An edit changes one dense latent z_c and keeps the SAE residual: x' = x + (z'_c - z_c) * W_dec[c] / scale "
    "(= x + decode(z') - decode(z))."
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sae", type=Path, required=True, help="trained SAE directory (results/sae/<run>)")
    parser.add_argument("--concepts", type=Path, default=None,
                        help="latents.parquet of `msae concepts`, to give concepts by name (and know their attribute)")
    parser.add_argument("--alpha-unit", choices=("p99", "raw"), default="p99",
                        help="unit of strengths for modes set/add: p99 = multiples of the latent's 99th-percentile "
                             "activation where it is active (default), raw = SAE latent units")
    parser.add_argument("--seed", type=int, default=0, help="random seed (query sampling, classifier); default: %(default)s")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps; default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output directory, e.g. results/probes/<run>/<probe>")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help=HELP, description=f"{HELP}. {EDIT_NOTE}")
    probes = parser.add_subparsers(dest="probe", metavar="PROBE", required=True)

    sim = probes.add_parser(
        "similarity",
        help="nearest neighbours of queries after setting a concept's strength",
        description=(
            "For each query and concept, set the concept's dense latent to each strength alpha, map back "
            "keeping the residual, and retrieve the nearest store items by cosine (the query excluded). "
            "Writes neighbours.json, strips/<query>__<concept>.png, curves.png (stores with attr_* ground "
            f"truth) and summary.json. {EDIT_NOTE}"
        ),
    )
    _common(sim)
    sim.add_argument("--embeddings", type=Path, required=True, help="embedding store searched (and holding the query ids)")
    sim.add_argument("--queries", default=None,
                     help="query ids: 'id1,id2', '@FILE' (one id per line) or 'random:N' (N store items, seeded)")
    sim.add_argument("--query-images", default="",
                     help="comma-separated image files used as extra queries, embedded with the store's backbone")
    sim.add_argument("--concept", action="append", default=[], required=True, metavar="NAME_OR_ID",
                     help="concept to edit: a latent id, a name from --concepts, or auto:N[:ATTRIBUTE] = the N best-scored valid concepts with distinct names, values of ATTRIBUTE first (repeatable)")
    sim.add_argument("--alphas", default="0,0.5,1,2,4",
                     help="strength grid, increasing (see --alpha-unit; mode scale: plain factors); default: %(default)s")
    sim.add_argument("--mode", choices=("set", "add", "scale"), default="set",
                     help="edit: set z_c = alpha (default), add alpha to z_c, or multiply z_c by alpha")
    sim.add_argument("--top", type=int, default=8, help="neighbours per query and strength; default: %(default)s")
    sim.add_argument("--image-root", default=None, help="folder that relative `path` values of the store are under")
    sim.add_argument("--max-strips", type=int, default=16,
                     help="draw strips for the first N queries only (all concepts each); default: %(default)s")
    sim.set_defaults(func=run_similarity)

    bias = probes.add_parser(
        "bias",
        help="rank concepts by how much intervening on them moves a linear classifier",
        description=(
            "Train an L2 logistic regression on --train for a binary target, then for each candidate concept "
            "intervene on every --test item and measure the mean change of p(positive) and the flip rate, "
            "overall and on items that follow or break the training set's strongest attribute association "
            "(--spurious). Writes bias.json, bias.png and summary.json. "
            f"{EDIT_NOTE} Paper's gender experiment: --target-column attr_Male on CelebA train/test."
        ),
    )
    _common(bias)
    bias.add_argument("--train", type=Path, required=True, help="embedding store the classifier is trained on")
    bias.add_argument("--test", type=Path, required=True, help="embedding store the interventions are measured on")
    bias.add_argument("--target-column", required=True, help="label column, e.g. attr_shape, label or attr_Male")
    bias.add_argument("--positive", default=None,
                      help="value of --target-column counted as positive; omit for a 0/1 (or -1/1, true/false) column")
    bias.add_argument("--candidates", action="append", default=[], metavar="NAME_OR_ID",
                      help="concepts to test (repeatable); default: every valid latent of --concepts, else every "
                           "latent active on at least --min-frequency of the test items")
    bias.add_argument("--min-frequency", type=float, default=0.01,
                      help="activity threshold for candidates when neither --candidates nor --concepts; default: %(default)s")
    bias.add_argument("--mode", choices=("remove", "set", "add", "scale"), default="remove",
                      help="intervention: remove (z_c = 0, default), set z_c = strength, add strength, or scale by it")
    bias.add_argument("--strength", type=float, default=0.0, help="strength for set/add/scale (see --alpha-unit); default: %(default)s")
    bias.add_argument("--spurious", default=None, metavar="COLUMN=VALUE",
                      help="attribute value defining correlated/anti-correlated test items, e.g. attr_color=red; "
                           "default: the attr_* value whose rate differs most between the training classes")
    bias.add_argument("--rank-by", choices=("abs_dp", "flip_rate"), default="abs_dp",
                      help="rank concepts by mean |change of p| or by flip rate, over all test items; default: %(default)s")
    bias.add_argument("--C", dest="c", type=float, default=1.0,
                      help="inverse L2 strength of the logistic regression (standardised inputs); default: %(default)s")
    bias.add_argument("--plot-top", type=int, default=20, help="concepts shown in bias.png; default: %(default)s")
    bias.set_defaults(func=run_bias)


def run_similarity(args: argparse.Namespace) -> int:
    from msae.probes import run_similarity as run
    from msae.runtime import configure_torch

    configure_torch()
    summary = run(
        args.sae, args.embeddings, args.concept, args.out,
        queries=args.queries,
        query_images=[f.strip() for f in args.query_images.split(",") if f.strip()],
        concepts_path=args.concepts, alphas=args.alphas, top=args.top, mode=args.mode,
        alpha_unit=args.alpha_unit, image_root=args.image_root, max_strips=args.max_strips,
        seed=args.seed, device=args.device,
    )
    shown = {k: round(v, 3) for k, v in summary.items() if k.endswith("_mean") or k == "monotone_share"}
    print(f"msae probe similarity: wrote {args.out} {shown}")
    return 0


def run_bias(args: argparse.Namespace) -> int:
    from msae.probes import run_bias as run
    from msae.runtime import configure_torch

    configure_torch()
    summary = run(
        args.sae, args.train, args.test, args.target_column, args.out,
        positive=args.positive, concepts_path=args.concepts, candidate_specs=args.candidates,
        min_frequency=args.min_frequency, mode=args.mode, strength=args.strength, alpha_unit=args.alpha_unit,
        spurious=args.spurious, rank_by=args.rank_by, c=args.c, plot_top=args.plot_top,
        seed=args.seed, device=args.device,
    )
    shown = {k: round(v, 3) for k, v in summary.items() if k.startswith(("test_acc", "spurious_rank"))}
    print(f"msae probe bias: wrote {args.out} {shown}")
    return 0
