"""`msae train`: train one sparse autoencoder on an embedding store."""

from __future__ import annotations

from msae.commands import Command
from msae.config.train import TrainCommon, train_spec
from msae.sae import variants


def run(config: TrainCommon) -> int:
    from msae.train import train_sae

    result = train_sae(config)
    final = result.final
    print(f"wrote {config.out}")
    print(
        f"msae train: {config.variant} SAE, {result.steps} steps in {result.seconds:.1f}s: final FVU "
        f"{final.get('fvu', float('nan')):.4g}, {final.get('active', float('nan')):.1f} active latents, "
        f"dead fraction {final.get('dead_fraction', float('nan')):.3g}, loss {final.get('loss', float('nan')):.4g}"
    )
    return 0


COMMANDS = (
    Command(
        "train",
        help=f"train a sparse autoencoder ({', '.join(variants.trainable())}) on an embedding store",
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
