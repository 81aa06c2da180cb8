"""`msae train`: train one sparse autoencoder on an embedding store (DESIGN §3-4)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 30
HELP = "train a sparse autoencoder (relu, topk, batchtopk, matryoshka, jumprelu) on an embedding store"
# Literal copies of msae.sae.config / msae.train choices so `msae --help` does not import torch
# (tests check they agree).
VARIANTS = ("relu", "topk", "batchtopk", "matryoshka", "jumprelu")
PLACEMENTS = ("auto", "device", "stream")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help=HELP,
        description=(
            "Train an SAE with the paper's recipe (decoder rows at unit norm, radial gradient removed, "
            "grad clip 1.0, AdamW eps 6.25e-10, flat LR then linear decay over the last 20%%). Writes "
            "OUT/model.safetensors, OUT/train_log.csv and OUT/config.json (last). A checkpoint in "
            "OUT/checkpoint/ after every epoch lets --resume continue an interrupted run exactly."
        ),
    )
    parser.add_argument("--embeddings", required=True, type=Path, help="training embedding store (.parquet, from msae embed)")
    parser.add_argument("--out", required=True, type=Path, help="run directory, e.g. results/sae/<run>/")
    parser.add_argument("--variant", required=True, choices=VARIANTS, help="SAE variant (activation and loss)")
    parser.add_argument("--expansion", required=True, type=float, help="latents per input dimension: n = int(expansion * d)")
    sparse = parser.add_argument_group("variant parameters (defaults: the paper's configs)")
    sparse.add_argument("--k", type=int, default=None, help="topk / batchtopk: active latents per sample; default 64 / 32")
    sparse.add_argument("--l1", type=float, default=None,
                        help="relu: weight of the L1 term mean(||z||_1 / ||x~||); default 0.003")
    sparse.add_argument("--nesting", type=_int_list, default=None, metavar="K1,K2,...",
                        help="matryoshka: strictly increasing k of the nested levels (<= n); default: --nesting-start "
                             "doubling up to n, plus n")
    sparse.add_argument("--nesting-start", type=int, default=None, help="matryoshka: first level of the default nesting; default 64")
    sparse.add_argument("--weighting", choices=("rw", "uw"), default="rw",
                        help="matryoshka: level weights, rw = h..1 (sparsest level weighs most) or uw = all 1; default: %(default)s")
    sparse.add_argument("--inner", choices=("topk", "batchtopk"), default="topk",
                        help="matryoshka: activation of each level; default: %(default)s")
    sparse.add_argument("--l0-coef", type=float, default=None, help="jumprelu: coefficient of the L0 penalty; default 1e-3")
    sparse.add_argument("--bandwidth", type=float, default=None,
                        help="jumprelu: width of the straight-through rectangle kernel; default 0.05")
    sparse.add_argument("--threshold-init", type=float, default=None, help="jumprelu: initial threshold; default 0.05")
    sparse.add_argument("--auxk-alpha", type=float, default=0.0,
                        help="weight of the AuxK loss on dead latents (0 = off, as in the paper); default: %(default)s")
    sparse.add_argument("--auxk-k", type=int, default=None, help="AuxK: dead latents used per sample; default min(512, n)")
    sparse.add_argument("--auxk-dead-steps", type=int, default=1000,
                        help="AuxK: a latent that has not fired for this many steps counts as dead; default: %(default)s")
    prep = parser.add_argument_group("loss and input normalisation")
    prep.add_argument("--loss", choices=("nmse", "mse"), default="nmse",
                      help="reconstruction loss: nmse = per-sample ||x^-x~||^2/||x~||^2 (the paper's), mse = mean over "
                           "elements; default: %(default)s")
    prep.add_argument("--scale-mode", choices=("rms", "paper"), default="rms",
                      help="input scale s after centring: rms = sqrt(d)/RMS||x-mu|| so E||x~||^2 = d; paper = the "
                           "official code's sqrt(d)/mean||x-mu||^2 (divides by the squared norm); default: %(default)s")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=30, help="passes over the data; default: %(default)s (the paper's)")
    opt.add_argument("--batch-size", type=int, default=4096, help="samples per step; default: %(default)s")
    opt.add_argument("--lr", type=float, default=None,
                     help="peak learning rate; default per variant: relu 5e-5, topk/batchtopk 5e-4, matryoshka 1e-4, jumprelu 5e-4")
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear LR warmup steps; default: %(default)s")
    opt.add_argument("--lr-schedule", choices=("step", "epoch"), default="step",
                     help="linear decay over the last 20%% per step (smooth) or per epoch (the reference's LinearDecayLR); "
                          "default: %(default)s")
    opt.add_argument("--seed", type=int, default=42, help="seed of the initialisation and the shuffles; default: %(default)s")
    opt.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass (weights stay fp32)")
    opt.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    opt.add_argument("--data-placement", choices=PLACEMENTS, default="auto",
                     help="keep the whole set on the device, stream Parquet row groups, or auto (device when it takes "
                          "at most half the free memory); default: %(default)s")
    logs = parser.add_argument_group("logging and checkpoints")
    logs.add_argument("--log-every", type=int, default=100, help="steps per train_log.csv row; default: %(default)s")
    logs.add_argument("--dead-window", type=int, default=1000,
                      help="steps per window of the dead-latent count (frequency < 10^-5.5); default: %(default)s")
    logs.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint/ (same data and parameters)")
    logs.add_argument("--keep-checkpoint", action="store_true",
                      help="keep OUT/checkpoint/ (optimiser state) after training; default: removed when done")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae import store
    from msae.sae import make_config
    from msae.train import TrainConfig, train_sae

    meta = store.read_meta(args.embeddings)
    sae_config = make_config(
        args.variant,
        int(meta["dim"]),
        args.expansion,
        k=args.k,
        l1=args.l1,
        nesting=args.nesting,
        nesting_start=args.nesting_start,
        weighting=args.weighting,
        inner=args.inner,
        l0_coef=args.l0_coef,
        bandwidth=args.bandwidth,
        threshold_init=args.threshold_init,
        loss=args.loss,
        scale_mode=args.scale_mode,
        auxk_alpha=args.auxk_alpha,
        auxk_k=args.auxk_k,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        lr_schedule=args.lr_schedule,
        seed=args.seed,
        bf16=args.bf16,
        log_every=args.log_every,
        dead_window=args.dead_window,
        auxk_dead_steps=args.auxk_dead_steps,
        data_placement=args.data_placement,
        keep_checkpoint=args.keep_checkpoint,
    )
    result = train_sae(args.embeddings, args.out, sae_config, train_config, device=args.device, resume=args.resume)
    final = ", ".join(f"{k} {v:.4g}" for k, v in result.final.items() if k in ("loss", "fvu", "l0", "dead_fraction"))
    print(f"trained {args.variant} SAE (n={sae_config.n_latents}) in {result.steps} steps, {result.seconds:.1f}s: {final}")
    print(f"wrote {Path(args.out)}")
    return 0
