"""`msae reseed`: the seed replicas of seed stability (a finished run trained at another seed)."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.reseed import ReseedConfig

HELP = "train a finished SAE run again with another seed and nothing else changed (seed stability)"


def run(config: ReseedConfig) -> int:
    from msae.config.reseed import replica_config
    from msae.train import train_sae

    result = train_sae(replica_config(config))
    print(
        f"msae reseed: {config.sae} at seed {config.seed}: {result.steps} steps in {result.seconds:.1f} s -> {config.out}"
    )
    return 0


COMMANDS = (
    Command(
        "reseed",
        help=HELP,
        description=(
            f"{HELP}: every option is read back from SAE/config.json (variant, sizes, loss, training "
            "parameters, the training store), so the replica differs from the run in its seed only. "
            "msae stability then matches the dictionaries of the run and its replicas."
        ),
        spec=single(ReseedConfig),
        run=run,
        order=31,
    ),
)
