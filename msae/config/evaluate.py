"""`msae evaluate` and `msae stability`: metrics of one trained SAE, and of two seeds' overlap."""

from __future__ import annotations

from pydantic import model_validator

from msae.config.base import ConfigError, PathList, PathOption, StageConfig, device_option, opt

STORES, CKNNA, PROBE = "evaluation data", "CKNNA", "linear probe (LP)"


class EvalOptions(StageConfig):
    """What `evaluate` computes on a loaded SAE: the evaluation data and the metric options."""

    embeddings: PathOption = opt(help="evaluation embedding store (Parquet)", group=STORES)
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
    """Seed stability: match the decoder atoms of two SAEs one to one (Hungarian)."""

    runs: PathList = opt((), "the two SAE directories (or use --sae-a/--sae-b)", positional=True, metavar="RUN")
    sae_a: PathOption | None = opt(None, "first SAE directory")
    sae_b: PathOption | None = opt(None, "second SAE directory")
    threshold: float = opt(0.9, "a matched pair counts as shared above this cosine", ge=-1, le=1)
    out: PathOption = opt(help="output JSON, e.g. results/eval/<run>/stability.json")

    @model_validator(mode="after")
    def _two_runs(self) -> StabilityConfig:
        if len(self.pair_candidates()) != 2:
            raise ConfigError(
                [
                    (
                        "runs",
                        f"give exactly two SAE runs (positional RUN_A RUN_B or --sae-a/--sae-b), "
                        f"got {len(self.pair_candidates())}",
                    )
                ]
            )
        return self

    def pair_candidates(self) -> list:
        return [*self.runs, *(p for p in (self.sae_a, self.sae_b) if p is not None)]

    @property
    def pair(self) -> tuple:
        first, second = self.pair_candidates()
        return first, second
