"""`msae baseline`: fit a classic dictionary method (PCA, ICA, k-means, dictionary learning, NMF)."""

from __future__ import annotations

from msae.baselines.config import BaselineConfig
from msae.commands import Command, single

HELP = "fit a classic dictionary method (scikit-learn) as an SAE run directory, for comparison"


def run(config: BaselineConfig) -> int:
    from msae.baselines.fit import fit_baseline

    result = fit_baseline(config)
    print(
        f"msae baseline: {config.method} with {result['n_latents']} latents in {result['seconds']:.1f} s, "
        f"training FVU {result['fvu']:.4f}; wrote {config.out}"
    )
    return 0


COMMANDS = (
    Command(
        "baseline",
        help=HELP,
        description=(
            f"{HELP}: the run directory (config.json, model.safetensors) loads with msae.sae.load, "
            "so msae evaluate, msae concepts and msae report take it like a trained SAE."
        ),
        spec=single(BaselineConfig),
        run=run,
        order=35,
    ),
)
