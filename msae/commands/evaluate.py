"""`msae evaluate`: every metric of the paper plus CLIP-native retention for one trained SAE."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 40
HELP = "evaluate a trained SAE on an embedding store: metrics.json (L0, FVU, CS, CKNNA, DO, NDN, LP, retention) + progressive.csv"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=HELP,
        description=(
            f"{HELP}. Metrics are computed in raw embedding space on the dense path (ReLU over all latents, "
            "what the paper reports) and the sparse path (the model's own activation; Matryoshka: its smallest "
            "level), and at each k of progressive recovery (top-k dense latents)."
        ),
    )
    parser.add_argument("--sae", type=Path, required=True, help="trained SAE directory (results/sae/<run>)")
    parser.add_argument("--embeddings", type=Path, required=True, help="evaluation embedding store (Parquet)")
    parser.add_argument("--probe-train", type=Path, default=None,
                        help="labelled store (column 'label') the linear probe for LP(KL)/LP(agreement) is trained on")
    parser.add_argument("--text-embeddings", type=Path, default=None,
                        help="caption store paired by id with the (image) evaluation set: image->text recall@1/@5")
    parser.add_argument("--class-embeddings", type=Path, default=None,
                        help="one text embedding per class (column 'label' = class name): zero-shot accuracy; "
                             "the evaluation set needs a 'label' column")
    parser.add_argument("--batch-size", type=int, default=10000, help="rows read per record batch; default: %(default)s")
    parser.add_argument("--cknna-batch", type=int, default=10000,
                        help="rows per CKNNA estimate (full batches only, unless the set is smaller than one); batches are "
                             "consecutive rows of the file, so shuffle a class-sorted store; also the block of rows "
                             "held in memory; default: %(default)s")
    parser.add_argument("--cknna-max-batches", type=int, default=None,
                        help="estimate CKNNA on at most this many batches per path (the first ones); CKNNA dominates the "
                             "run time on CPU (m^2 x n per batch and path); default: every full batch, as the paper")
    parser.add_argument("--cknna-k", type=int, default=10, help="CKNNA nearest neighbours; default: %(default)s")
    parser.add_argument("--probe-holdout", type=float, default=0.1,
                        help="fraction of --probe-train held out for early stopping; default: %(default)s")
    parser.add_argument("--probe-lr", type=float, default=1e-3, help="probe AdamW learning rate; default: %(default)s")
    parser.add_argument("--probe-batch-size", type=int, default=512,
                        help="probe minibatch (lower it for small training sets: few steps per epoch stop early); "
                             "default: %(default)s")
    parser.add_argument("--probe-max-epochs", type=int, default=100, help="probe epochs at most; default: %(default)s")
    parser.add_argument("--probe-patience", type=int, default=5,
                        help="stop after this many epochs without a better held-out macro-F1; default: %(default)s")
    parser.add_argument("--seed", type=int, default=42, help="random seed (probe split, init, shuffling); default: %(default)s")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps; default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output directory, e.g. results/eval/<run>/")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.evaluate import EvalOptions, evaluate, write_outputs
    from msae.runtime import configure_torch, resolve_device, seed_everything
    from msae.sae import load

    configure_torch()
    seed_everything(args.seed)
    device = resolve_device(args.device)
    sae = load(args.sae, device=device)
    options = EvalOptions(
        batch_size=args.batch_size, cknna_batch=args.cknna_batch, cknna_k=args.cknna_k,
        cknna_max_batches=args.cknna_max_batches, seed=args.seed,
        probe_train=args.probe_train, probe_holdout=args.probe_holdout, probe_lr=args.probe_lr,
        probe_batch_size=args.probe_batch_size, probe_max_epochs=args.probe_max_epochs,
        probe_patience=args.probe_patience, text_embeddings=args.text_embeddings, class_embeddings=args.class_embeddings,
    )
    result = evaluate(sae, args.embeddings, options, sae_dir=args.sae)
    out = write_outputs(result, args.out)
    dense = result.metrics["dense"]
    print(f"wrote {out}/metrics.json: dense L0 {dense['l0']:.3f}, FVU {dense['fvu']:.4f}, CS {dense['cs']:.4f}, "
          f"DO {result.metrics['do']:.4f}, NDN {result.metrics['ndn']}")
    return 0
