"""`msae train`: train one sparse autoencoder on an embedding store."""

from __future__ import annotations

from msae.commands import Command
from msae.config.train import TrainCommon, train_spec


def run(config: TrainCommon) -> int:
    from msae.train import train_sae

    result = train_sae(config)
    final = ", ".join(f"{k} {v:.4g}" for k, v in result.final.items() if k in ("loss", "fvu", "l0", "dead_fraction"))
    print(f"trained {config.variant} SAE in {result.steps} steps, {result.seconds:.1f}s: {final}")
    print(f"wrote {config.out}")
    return 0


COMMANDS = (
    Command(
        "train",
        help="train a sparse autoencoder (relu, topk, batchtopk, matryoshka, jumprelu) on an embedding store",
        description=(
            "Train an SAE with the paper's recipe (decoder rows at unit norm, radial gradient removed, grad clip, "
            "AdamW eps 6.25e-10, flat LR then linear decay). Writes OUT/model.safetensors, OUT/train_log.csv and "
            "OUT/config.json (last). A checkpoint in OUT/checkpoint/ after every epoch lets --resume continue an "
            "interrupted run exactly."
        ),
        spec=train_spec,
        run=run,
        order=30,
    ),
)
