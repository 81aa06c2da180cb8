"""`msae world render|train-clip|eval-clip`: the offline world and its tiny CLIP."""

from __future__ import annotations

import json

from msae.commands import Command, Group, single
from msae.config.world import ClipEvalConfig, ClipTrainingConfig, RenderConfig


def run_render(config: RenderConfig) -> int:
    from msae.world.render import render_world

    print(render_world(config))
    return 0


def run_train(config: ClipTrainingConfig) -> int:
    from msae.world.train_clip import train_clip

    out = train_clip(config)
    print(out if out is not None else f"stopped at step {config.stop_after}; continue with --resume")
    return 0


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
        commands=(
            Command(
                "render",
                help="render images, captions and the manifest Parquet",
                spec=single(RenderConfig),
                run=run_render,
            ),
            Command(
                "train-clip",
                help="train the world CLIP contrastively (ClipLoss, AdamW, warm-up + cosine)",
                spec=single(ClipTrainingConfig),
                run=run_train,
            ),
            Command(
                "eval-clip",
                help="zero-shot attribute accuracy and image-caption recall on fresh held-out images",
                spec=single(ClipEvalConfig),
                run=run_eval,
            ),
        ),
    ),
)
