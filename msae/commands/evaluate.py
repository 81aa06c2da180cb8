"""`msae evaluate`: every metric of the paper plus CLIP-native retention for one trained SAE."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.evaluate import EvaluateConfig

HELP = (
    "evaluate a trained SAE on an embedding store: metrics.json (L0 zero fraction, active latents, FVU, CS, "
    "CKNNA, DO, NDN, LP, retention) + progressive.csv"
)


def run(config: EvaluateConfig) -> int:
    from msae.evaluation import evaluate_run

    result = evaluate_run(config)
    metrics, seconds = result.metrics, sum(result.seconds.values())
    dense, sparse = metrics["dense"], metrics["sparse"]
    print(
        f"msae evaluate: wrote {config.out}/metrics.json in {seconds:.0f}s: dense FVU {dense['fvu']:.4g}, "
        f"L0 zero fraction {dense['l0_zero_fraction']:.3f}, active {dense['active']:.1f}, CS {dense['cs']:.4f}, "
        f"CKNNA {dense.get('cknna', float('nan')):.3f}; sparse FVU {sparse['fvu']:.4g}; DO {metrics['do']:.4f}, "
        f"NDN {metrics['ndn']}"
    )
    return 0


COMMANDS = (
    Command(
        "evaluate",
        help=HELP,
        description=(
            f"{HELP}. Metrics are computed in raw embedding space on the dense path (ReLU over all latents, what the "
            "paper reports) and the sparse path (the model's own activation; Matryoshka: its smallest level), and at "
            "each k of progressive recovery (top-k dense latents)."
        ),
        spec=single(EvaluateConfig),
        run=run,
        order=40,
    ),
)
