"""The report's tables beyond Table 1: the paper's Table 2 (training modality vs language and
vision metrics), every metric as mean ± std over seeds with the stability of the dictionaries, and
the planted bias shown by contrast (classifier trained on the spurious split vs on the control)."""

from __future__ import annotations

from collections.abc import Sequence

from msae.layout import TEXT_EVAL_PREFIX
from msae.report.collect import RunResults
from msae.report.table import Column, Table, path_columns, seed_summary, source_data

MODALITY_NOTE = (
    "The paper's Table 2 on the dense path: each run evaluated on held-out captions (language) and "
    "held-out images (vision), mean ± std over samples (CKNNA: over batches). A run trained on text, "
    "or on both modalities (image+text), is marked in its label. L0 (zero frac.) is the paper's L0, the fraction of zero latents (↑ sparser). "
    "NDN = latents dead at the end of training (the paper's single NDN column)."
)
SEEDS_NOTE = (
    "Runs trained at several seeds (stability: in params.yaml; only the seed changes): each metric is "
    "the mean ± std (ddof 1) over the seeds, dense path on the held-out images. Matched cos. = mean "
    "cosine of the decoder atoms matched one to one (Hungarian) between two seeds; Shared@{threshold} = share "
    "of atoms matched above cosine {threshold} (Paulo & Belrose 2025); both mean ± std over every pair of seeds."
)
BIAS_NOTE = (
    "The planted bias shown by contrast: the same bias probe with its classifier trained on the split "
    "where the planted colour goes with the target (spur.) and on the control split without that "
    "correlation (ctrl.). Rank = rank of the planted colour's concept among all concepts by effect on the "
    "classifier (1 = largest); Flip = share of test predictions that flip when it is removed (anti: on "
    "items that break the training association); Effect/top = its effect relative to the top concept's; "
    "Train gap = P(colour | target) - P(colour | other) in the classifier's training split. A planted bias "
    "reads as a small rank, large flips and a large gap under spur. and not under ctrl."
)


def modality_tables(runs: Sequence[RunResults]) -> list[Table]:
    """One Table-2 layout per language evaluation found (results/eval/<run>/text_<split>/)."""
    names = sorted({name for run in runs for name in run.cross_modal})
    out = []
    for name in names:
        split = name.removeprefix(TEXT_EVAL_PREFIX)
        columns = (
            *path_columns("dense", f"eval:{name}", "Lang. "),
            *path_columns("dense", "metrics", "Vis. "),
            Column("NDN", False, ("ndn_train",), style="single", digits="int", tip="dead at the end of training"),
        )
        with_text = [run for run in runs if source_data(run, f"eval:{name}") is not None]
        heading = f"Training modality: language ({split} captions) vs vision (the paper's Table 2)"
        out.append(Table(heading, with_text, columns, MODALITY_NOTE))
    return out


def _over_seeds(header: str, higher: bool, path: tuple[str, ...], digits: str = "frac") -> Column:
    return Column(header, higher, ("mean", *path), ("std", *path), digits=digits, source="seeds")


SEEDS_COLUMNS: tuple[Column, ...] = (
    Column("Seeds", True, ("n",), style="single", digits="int", source="seeds", mark=False),
    _over_seeds("L0 (zero frac.)", True, ("dense", "l0_zero_fraction")),
    _over_seeds("FVU", False, ("dense", "fvu")),
    _over_seeds("CS", True, ("dense", "cs")),
    _over_seeds("CKNNA", True, ("dense", "cknna")),
    _over_seeds("LP(KL)", False, ("lp_kl",), "nats"),
    _over_seeds("Sparse FVU", False, ("sparse", "fvu")),
    _over_seeds("Active (count)", False, ("sparse", "active"), "nats"),
    Column("Matched cos.", True, ("mean_cosine",), ("mean_cosine_std",), source="stability"),
    Column("Shared@{threshold}", True, ("fraction_above",), ("fraction_above_std",), source="stability"),
)


def seeds_table(runs: Sequence[RunResults]) -> Table:
    """Runs with seed replicas: metrics over seeds and the stability of their dictionaries."""
    seeded = [run for run in runs if seed_summary(run) is not None or run.stability is not None]
    return Table("Seeds: mean ± std over seeds and dictionary stability", seeded, SEEDS_COLUMNS, SEEDS_NOTE)


def _bias(header: str, key: str, probe: str, digits: str = "frac") -> Column:
    tag = "spur." if probe == "bias" else "ctrl."
    return Column(
        f"{header} ({tag})", False, (key,), digits=digits, style="single", source=f"probe:{probe}", mark=False
    )


BIAS_COLUMNS: tuple[Column, ...] = tuple(
    _bias(header, key, probe, digits)
    for header, key, digits in (
        ("Rank", "spurious_rank", "int"),
        ("Flip", "spurious_flip_rate", "frac"),
        ("Flip anti", "spurious_flip_rate_anti", "frac"),
        ("Effect/top", "spurious_effect_vs_top", "frac"),
        ("Train gap", "spurious_train_gap", "frac"),
    )
    for probe in ("bias", "bias_control")
)


def bias_table(runs: Sequence[RunResults]) -> Table:
    """Runs with both bias probes: the spurious classifier's numbers beside the control's."""
    both = [run for run in runs if "bias" in run.probes and "bias_control" in run.probes]
    return Table("Planted bias: spurious vs control classifier", both, BIAS_COLUMNS, BIAS_NOTE)
