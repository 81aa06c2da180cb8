"""`msae evaluate`: every metric of the paper plus CLIP-native retention for one trained SAE."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.evaluate import EvaluateConfig

HELP = (
    "evaluate a trained SAE on an embedding store: metrics.json (L0, FVU, CS, CKNNA, DO, NDN, LP, retention) "
    "+ progressive.csv"
)


def run(config: EvaluateConfig) -> int:
    from msae.evaluation import evaluate_run

    metrics = evaluate_run(config).metrics
    dense = metrics["dense"]
    print(
        f"wrote {config.out}/metrics.json: dense L0 {dense['l0']:.3f}, FVU {dense['fvu']:.4f}, CS {dense['cs']:.4f}, "
        f"DO {metrics['do']:.4f}, NDN {metrics['ndn']}"
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
