"""`msae stability`: how many decoder atoms SAE runs trained with different seeds share."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.evaluate import StabilityConfig

HELP = "seed stability: match the decoder atoms of every pair of SAEs one to one (Hungarian) and report their cosines"


def run(config: StabilityConfig) -> int:
    from msae.metrics.stability import compare_runs

    result = compare_runs(config)
    print(
        f"wrote {config.out}: {result['n_pairs']} pair(s) of seeds, mean matched cosine "
        f"{result['mean_cosine']:.4f}, {result['fraction_above']:.1%} of atoms matched above {config.threshold}"
    )
    return 0


COMMANDS = (
    Command(
        "stability",
        help=HELP,
        spec=single(StabilityConfig),
        run=run,
        order=45,
        description=(
            f"{HELP}: the mean matched cosine and the share of atoms matched above --threshold, each "
            "averaged over all pairs of runs (mean and std over the pairs). The runs must be seeds of one "
            "configuration unless --any-config."
        ),
    ),
)
