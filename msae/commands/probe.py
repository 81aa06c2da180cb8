"""`msae probe similarity|bias`: the paper's downstream uses of an SAE."""

from __future__ import annotations

from msae.commands import Command, Group, single
from msae.config.probes import BiasConfig, SimilarityConfig

HELP = "downstream probes: concept-controlled similarity search, counterfactual bias analysis"
EDIT_NOTE = (
    "An edit changes one dense latent z_c and keeps the SAE residual: x' = x + (z'_c - z_c) * W_dec[c] / scale "
    "(= x + decode(z') - decode(z))."
)


def run_similarity(config: SimilarityConfig) -> int:
    from msae.probes import run_similarity as run
    from msae.runtime import configure_torch

    configure_torch()
    summary = run(config)
    shown = {k: round(v, 3) for k, v in summary.items() if k.endswith("_mean") or k == "monotone_share"}
    queries, concepts = int(summary["n_queries"]), int(summary["n_concepts"])
    print(
        f"msae probe similarity: {queries} queries x {concepts} concepts -> {config.out}; "
        f"{shown or 'no ground truth to score the edits'}"
    )
    return 0


def run_bias(config: BiasConfig) -> int:
    from msae.probes import run_bias as run
    from msae.runtime import configure_torch

    configure_torch()
    summary = run(config)
    shown = {k: round(v, 3) for k, v in summary.items() if k.startswith(("test_acc", "spurious_rank"))}
    print(f"msae probe bias: wrote {config.out} {shown}")
    return 0


COMMANDS = (
    Group(
        "probe",
        help=HELP,
        description=f"{HELP}. {EDIT_NOTE}",
        order=70,
        commands=(
            Command(
                "similarity",
                help="nearest neighbours of queries after setting a concept's strength",
                description=(
                    "For each query and concept, set the concept's dense latent to each strength alpha, map back "
                    "keeping the residual, and retrieve the nearest store items by cosine (the query excluded). "
                    "Writes neighbours.json, strips/<query>__<concept>.png, curves.png (stores with attr_* ground "
                    f"truth) and summary.json. {EDIT_NOTE}"
                ),
                spec=single(SimilarityConfig),
                run=run_similarity,
            ),
            Command(
                "bias",
                help="rank concepts by how much intervening on them moves a linear classifier",
                description=(
                    "Train an L2 logistic regression on --train for a binary target, then for each candidate concept "
                    "intervene on every --test item and measure the mean change of p(positive) and the flip rate, "
                    "overall and on items that follow or break the training set's strongest attribute association "
                    f"(--spurious). Writes bias.json, bias.png and summary.json. {EDIT_NOTE} Paper's gender "
                    "experiment: --target-column attr_Male on CelebA train/test."
                ),
                spec=single(BiasConfig),
                run=run_bias,
            ),
        ),
    ),
)
