"""`msae stability`: how many decoder atoms two SAE runs (e.g. two seeds) share."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.evaluate import StabilityConfig

HELP = "seed stability: match the decoder atoms of two SAEs one to one (Hungarian) and report their cosines"


def run(config: StabilityConfig) -> int:
    from msae.metrics.stability import compare_runs

    result = compare_runs(config)
    print(
        f"wrote {config.out}: mean matched cosine {result['mean_cosine']:.4f}, "
        f"{result['fraction_above']:.1%} of pairs above {config.threshold}"
    )
    return 0


COMMANDS = (
    Command(
        "stability",
        help=HELP,
        spec=single(StabilityConfig),
        run=run,
        order=45,
        description=f"{HELP}: mean matched cosine and the fraction of matched pairs above --threshold.",
    ),
)
