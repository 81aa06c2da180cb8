"""`msae evaluate` and `msae stability`: metrics of one trained SAE, and the overlap of several seeds."""

from __future__ import annotations

from pydantic import model_validator

from msae.config.base import ConfigError, PathList, PathOption, StageConfig, device_option, opt
from msae.config.embed import Modality

STORES, CKNNA, PROBE = "evaluation data", "CKNNA", "linear probe (LP)"


class EvalOptions(StageConfig):
    """What `evaluate` computes on a loaded SAE: the evaluation data and the metric options."""

    embeddings: PathOption = opt(help="evaluation embedding store (Parquet)", group=STORES)
    modality: Modality | None = opt(
        None,
        "the modality --embeddings must hold; default: the one the SAE was trained on, either for one "
        "trained on both (give the other for a cross-modal evaluation, the paper's Table 2)",
        group=STORES,
    )
    probe_train: PathOption | None = opt(
        None, "labelled store (column 'label') the linear probe for LP(KL)/LP(agreement) is trained on", group=STORES
    )
    text_embeddings: PathOption | None = opt(
        None, "caption store paired by id with the (image) evaluation set: image->text recall@1/@5", group=STORES
    )
    class_embeddings: PathOption | None = opt(
        None,
        "one text embedding per class (column 'label' = class name): "
        "zero-shot accuracy; the evaluation set needs a 'label' column",
        group=STORES,
    )
    batch_size: int = opt(10000, "rows read per record batch", ge=1)
    cknna_batch: int = opt(
        10000,
        "rows per CKNNA estimate (full batches only, unless the set is smaller than one); "
        "batches are consecutive rows of the file, so shuffle a class-sorted store; also the block "
        "of rows held in memory",
        ge=4,
        group=CKNNA,
    )
    cknna_max_batches: int | None = opt(
        None,
        "estimate CKNNA on at most this many batches per path (the first ones); "
        "default: every full batch, as the paper",
        ge=1,
        group=CKNNA,
    )
    cknna_k: int = opt(10, "CKNNA nearest neighbours", ge=1, group=CKNNA)
    probe_holdout: float = opt(0.1, "fraction of --probe-train held out for early stopping", gt=0, lt=1, group=PROBE)
    probe_lr: float = opt(1e-3, "probe AdamW learning rate", gt=0, group=PROBE)
    probe_batch_size: int = opt(
        512, "probe minibatch (lower it for small training sets: few steps per epoch stop early)", ge=1, group=PROBE
    )
    probe_max_epochs: int = opt(100, "probe epochs at most", ge=1, group=PROBE)
    probe_patience: int = opt(5, "stop after this many epochs without a better held-out macro-F1", ge=1, group=PROBE)
    seed: int = opt(42, "random seed (probe split, init, shuffling)", ge=0)
    device: str = device_option()


class EvaluateConfig(EvalOptions):
    """Every metric of the paper plus CLIP-native retention for one trained SAE."""

    sae: PathOption = opt(help="trained SAE directory (results/sae/<run>)")
    out: PathOption = opt(help="output directory, e.g. results/eval/<run>/")


class StabilityConfig(StageConfig):
    """Seed stability (Paulo & Belrose 2025): match the decoder atoms of every pair of SAEs one to
    one (Hungarian) and report the mean matched cosine and the share of atoms matched above a
    threshold, averaged over all pairs."""

    runs: PathList = opt(
        (), "the SAE directories, two or more (or use --sae-a/--sae-b)", positional=True, metavar="RUN"
    )
    sae_a: PathOption | None = opt(None, "first SAE directory")
    sae_b: PathOption | None = opt(None, "second SAE directory")
    threshold: float = opt(
        0.7, "a matched pair of atoms counts as shared above this cosine (0.7: Paulo & Belrose)", ge=-1, le=1
    )
    any_config: bool = opt(
        False,
        "compare runs that differ in more than the seed (default: refuse, so a stale or foreign run "
        "is not counted as a seed)",
    )
    out: PathOption = opt(help="output JSON, e.g. results/eval/<run>/stability.json")

    @model_validator(mode="after")
    def _two_runs(self) -> StabilityConfig:
        if len(self.all_runs) < 2:
            raise ConfigError(
                [
                    (
                        "runs",
                        f"give two or more SAE runs (positional RUN... or --sae-a/--sae-b), got {len(self.all_runs)}",
                    )
                ]
            )
        return self

    @property
    def all_runs(self) -> list:
        """--sae-a/--sae-b first (the pipeline gives the run itself as --sae-a), then RUN..."""
        return [*(p for p in (self.sae_a, self.sae_b) if p is not None), *self.runs]
