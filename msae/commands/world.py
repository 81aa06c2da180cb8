"""`msae world render|train-clip|eval-clip`: the offline world and its tiny CLIP."""

from __future__ import annotations

import json

from msae.commands import Group, action
from msae.config.world import ClipEvalConfig, ClipTrainingConfig, RenderConfig


@action("render", RenderConfig, "render images, captions and the manifest Parquet")
def run_render(config: RenderConfig) -> int:
    from msae.world.render import render_world

    manifest = render_world(config)
    total = config.n_train + config.n_val + config.n_test + 2 * config.n_bias
    print(f"msae world render: {total} images in {config.out} (manifest {manifest})")
    return 0


@action("train-clip", ClipTrainingConfig, "train the world CLIP contrastively (ClipLoss, AdamW, warm-up + cosine)")
def run_train(config: ClipTrainingConfig) -> int:
    from msae.world.train_clip import train_clip

    out = train_clip(config)
    print(out if out is not None else f"stopped at step {config.stop_after}; continue with --resume")
    return 0


@action("eval-clip", ClipEvalConfig, "zero-shot attribute accuracy and image-caption recall on fresh held-out images")
def run_eval(config: ClipEvalConfig) -> int:
    from msae.io import write_json_atomic
    from msae.world.quality import evaluate_world_clip

    quality = evaluate_world_clip(config)
    if config.out:
        write_json_atomic(config.out, quality)
    print(json.dumps(quality, indent=2, sort_keys=True))
    return 0


COMMANDS = (
    Group(
        "world",
        help="render the synthetic world, train and evaluate its tiny CLIP",
        description=__doc__ or "",
        order=10,
        commands=(run_render, run_train, run_eval),
    ),
)
