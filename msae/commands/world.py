"""`msae world render|train-clip|eval-clip`: the offline world and its tiny CLIP."""

from __future__ import annotations

import argparse

ORDER = 10
HELP = "render the synthetic world, train and evaluate its tiny CLIP"


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("world", help=HELP, description=__doc__)
    sub = parser.add_subparsers(dest="world_command", metavar="ACTION", required=True)

    render = sub.add_parser("render", help="render images, captions and the manifest Parquet")
    render.add_argument("--out", required=True, help="output directory (images/, manifest.parquet, world.json)")
    render.add_argument("--n-train", type=_nonneg_int, default=20000, help="images in the train split")
    render.add_argument("--n-val", type=_nonneg_int, default=2000, help="images in the val split")
    render.add_argument("--n-test", type=_nonneg_int, default=2000, help="images in the test split")
    render.add_argument("--n-bias", type=_nonneg_int, default=4000, help="images in each bias split (bias_train, bias_control)")
    render.add_argument("--seed", type=int, default=0, help="world seed: same seed, same bytes")
    render.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    render.add_argument("--second-object-rate", type=float, default=0.0, help="probability of a second object behind the first")
    render.add_argument("--bias-shape", default="star", help="target shape of the planted correlation in bias_train")
    render.add_argument("--bias-color", default="red", help="colour given to the bias shape in bias_train")
    render.add_argument("--bias-rate", type=float, default=0.9, help="P(bias colour | bias shape) in bias_train")
    render.add_argument("--workers", default="auto", help="render processes ('auto' = one per CPU); does not change the output")
    render.set_defaults(func=run_render)

    train = sub.add_parser("train-clip", help="train the world CLIP contrastively (ClipLoss, AdamW, warm-up + cosine)")
    train.add_argument("--out", required=True, help="weights file to write (fp16 .safetensors); checkpoints go to <stem>.checkpoints/")
    train.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    train.add_argument("--batch-size", type=int, default=256, help="image-caption pairs per step")
    train.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (not on gains, biases, logit scale)")
    train.add_argument("--warmup", type=int, default=40, help="linear warm-up steps before the cosine decay")
    train.add_argument("--seed", type=int, default=0, help="seed of the training scenes, batches and initial weights")
    train.add_argument("--n-train", type=int, default=200000, help="size of the fixed set of training scenes")
    train.add_argument("--hard-batch-rate", type=float, default=0.5, help="fraction of batches drawn from a few (colour, background) groups")
    train.add_argument("--hard-groups", type=int, default=4, help="(colour, background) groups in a hard batch")
    train.add_argument("--partial-caption-rate", type=float, default=0.2, help="fraction of captions naming the shape and a random subset of the other attributes")
    train.add_argument("--generic-noun-rate", type=float, default=0.0, help="fraction of short captions saying 'shape' instead of the shape's name (ties zero-shot prompts to every shape)")
    train.add_argument("--generic-noun-from", type=int, default=0, help="first step that uses --generic-noun-rate (shapes are learnt first)")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (resumable state + fp16 snapshot)")
    train.add_argument("--stop-after", type=int, default=None, help="stop at this step with a resumable checkpoint (continue later with --resume)")
    train.add_argument("--resume", action="store_true", help="continue from <stem>.checkpoints/state.pt")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    train.set_defaults(func=run_train)

    evaluate = sub.add_parser("eval-clip", help="zero-shot attribute accuracy and image-caption recall on fresh held-out images")
    evaluate.add_argument("--weights", default="builtin", help="weights .safetensors, or 'builtin' for the shipped ones")
    evaluate.add_argument("--n", type=int, default=1000, help="held-out images (and captions for recall)")
    evaluate.add_argument("--seed", type=int, default=12345, help="seed of the held-out world (use one different from training)")
    evaluate.add_argument("--out", default=None, help="write the quality numbers to this JSON file")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    evaluate.set_defaults(func=run_eval)


def run_render(args: argparse.Namespace) -> int:
    from msae.world.render import render_world
    from msae.world.scene import WorldParams

    params = WorldParams(
        image_size=args.image_size,
        second_object_rate=args.second_object_rate,
        bias_shape=args.bias_shape,
        bias_color=args.bias_color,
        bias_rate=args.bias_rate,
    )
    manifest = render_world(args.out, args.n_train, args.n_val, args.n_test, args.n_bias, args.seed, params, args.workers)
    print(manifest)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from msae.world.train_clip import TrainConfig, train_clip

    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        seed=args.seed,
        n_train=args.n_train,
        hard_batch_rate=args.hard_batch_rate,
        hard_groups=args.hard_groups,
        partial_caption_rate=args.partial_caption_rate,
        generic_noun_rate=args.generic_noun_rate,
        generic_noun_from=args.generic_noun_from,
    )
    out = train_clip(
        args.out, cfg, device=args.device, resume=args.resume,
        checkpoint_every=args.checkpoint_every, stop_after=args.stop_after,
    )
    print(out if out is not None else f"stopped at step {args.stop_after}; continue with --resume")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from msae.io import write_json_atomic
    from msae.world.quality import evaluate_world_clip

    quality = evaluate_world_clip(args.weights, n=args.n, seed=args.seed, device=args.device)
    if args.out:
        write_json_atomic(args.out, quality)
    print(json.dumps(quality, indent=2, sort_keys=True))
    return 0
