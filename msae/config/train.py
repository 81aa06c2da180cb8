"""`msae train`: the options of one SAE training run (a `runs:` entry of params.yaml).

The config is a union over the SAE variants: the options every run has (`TrainCommon`) plus the
options of its variant, told apart by `variant`. The variant modules declare their own options.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any, Literal

from pydantic import create_model

from msae.config.base import ConfigSpec, PathOption, StageConfig, device_option, opt
from msae.sae import variants
from msae.sae.architecture import Reconstruction, SAEConfig, ScaleMode, resolve

SAE, NORMALISATION, OPTIMISATION, LOGGING = (
    "SAE",
    "loss and input normalisation",
    "optimisation",
    "logging and checkpoints",
)
Placement = Literal["auto", "device", "stream"]
LrRule = Literal["scaled", "paper"]
# The `scaled` learning-rate rule (docs in `scaled_lr`): Gao et al. (2024)'s fit for long runs,
# raised for short runs and capped, each constant measured on planted dictionaries (see the note).
GAO_LR, GAO_LATENTS = 2e-4, 2**14
SHORT_RUN_STEPS = 10_000
MAX_SCALED_LR = 0.02
# The keys of `training` in config.json and of the resume fingerprint (everything that must match
# for a resume to continue the same run; keep-checkpoint only decides what is kept).
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "lr_rule",
    "warmup_steps",
    "lr_schedule",
    "decay_fraction",
    "grad_clip",
    "seed",
    "bf16",
    "log_every",
    "dead_window",
    "auxk_dead_steps",
    "data_placement",
    "keep_checkpoint",
)


def _default_lrs() -> str:
    return ", ".join(f"{v.name} {v.default_lr:g}" for v in variants.trainable().values())


def scaled_lr(n_latents: int, steps: int) -> float:
    """The default peak learning rate: Gao et al. (2024)'s lr = 2e-4 * sqrt(2^14 / n), fitted on
    runs of tens of thousands of steps, times sqrt(SHORT_RUN_STEPS / steps) for shorter runs
    (Adam moves each weight by about lr per step, so a short run needs larger steps to travel as
    far; on planted dictionaries the best rate fell with the run length, and at twice it runs of
    ~1,000 steps diverged), at most MAX_SCALED_LR. The paper's per-variant values (tuned for ~20k
    steps on millions of samples) leave short runs untrained; at the paper's scale (n = 24,576,
    ~22k steps) this rule gives 1.6e-4, between its 1e-4 (Matryoshka) and 5e-4 (TopK)."""
    factor = math.sqrt(max(1.0, SHORT_RUN_STEPS / max(steps, 1)))
    return min(MAX_SCALED_LR, GAO_LR * math.sqrt(GAO_LATENTS / n_latents) * factor)


class TrainCommon(StageConfig):
    """Options of every SAE run, whatever its variant."""

    embeddings: PathOption = opt(help="training embedding store (.parquet, from msae embed)", group=SAE)
    out: PathOption = opt(help="run directory, e.g. results/sae/<run>/", group=SAE)
    variant: str = opt(help="SAE variant (activation and loss)", pinned=True, group=SAE)
    expansion: float = opt(help="latents per input dimension: n = int(expansion * d)", gt=0, pinned=True, group=SAE)
    loss: Reconstruction = opt(
        "nmse",
        "reconstruction loss: nmse = per-sample ||x^-x~||^2/||x~||^2 (the paper's), mse = mean over elements",
        group=NORMALISATION,
    )
    scale_mode: ScaleMode = opt(
        "rms",
        "input scale s after centring: rms = sqrt(d)/RMS||x-mu|| so E||x~||^2 = d; "
        "paper = the official code's sqrt(d)/mean||x-mu||^2 (divides by the squared norm)",
        group=NORMALISATION,
    )
    auxk_alpha: float = opt(
        0.0, "weight of the AuxK loss on dead latents (0 = off, as in the paper)", ge=0, group=NORMALISATION
    )
    auxk_k: int | None = opt(None, "AuxK: dead latents used per sample; default min(512, n)", ge=1, group=NORMALISATION)
    auxk_dead_steps: int = opt(
        1000, "AuxK: a latent that has not fired for this many steps counts as dead", ge=1, group=NORMALISATION
    )
    epochs: int = opt(30, "passes over the data (the paper's: 30)", ge=1, pinned=True, group=OPTIMISATION)
    batch_size: int = opt(4096, "samples per step", ge=1, pinned=True, group=OPTIMISATION)
    lr: float | None = opt(None, "peak learning rate; default: set by --lr-rule", gt=0, pinned=True, group=OPTIMISATION)
    lr_rule: LrRule = opt(
        "scaled",
        "the learning rate when --lr is not given: scaled = 2e-4*sqrt(2^14/n) (Gao et al. 2024), "
        f"times sqrt({SHORT_RUN_STEPS}/steps) for shorter runs, at most {MAX_SCALED_LR:g}; "
        f"paper = the paper's per variant: {_default_lrs()}",
        group=OPTIMISATION,
    )
    warmup_steps: int = opt(0, "linear LR warmup steps", ge=0, group=OPTIMISATION)
    lr_schedule: Literal["step", "epoch"] = opt(
        "step",
        "linear decay over the last decay-fraction of training per step "
        "(smooth) or per epoch (the official LinearDecayLR)",
        group=OPTIMISATION,
    )
    decay_fraction: float = opt(
        0.2, "share of training over which the LR decays linearly", gt=0, le=1, group=OPTIMISATION
    )
    grad_clip: float = opt(1.0, "global gradient-norm clip", gt=0, group=OPTIMISATION)
    seed: int = opt(42, "seed of the initialisation and the shuffles", ge=0, pinned=True, group=OPTIMISATION)
    bf16: bool = opt(False, "bf16 autocast for the forward pass (weights stay fp32)", group=OPTIMISATION)
    device: str = device_option()
    data_placement: Placement = opt(
        "auto",
        "keep the whole set on the device, stream Parquet row groups, or auto "
        "(device when it takes at most half the free memory)",
        group=OPTIMISATION,
    )
    log_every: int = opt(100, "steps per train_log.csv row", ge=1, group=LOGGING)
    dead_window: int = opt(1000, "steps per window of the dead-latent count (frequency < 10^-5.5)", ge=1, group=LOGGING)
    resume: bool = opt(False, "continue from OUT/checkpoint/ (same data and parameters)", group=LOGGING)
    keep_checkpoint: bool = opt(
        False, "keep OUT/checkpoint/ (optimiser state) after training; default: removed when done", group=LOGGING
    )

    @property
    def kind(self) -> variants.Variant:
        return variants.get(self.variant)

    def learning_rate(self, n_latents: int, steps: int) -> float:
        """The peak learning rate of a run of `steps` optimiser steps with `n_latents` latents:
        --lr, else the --lr-rule's."""
        if self.lr is not None:
            return self.lr
        return self.kind.default_lr if self.lr_rule == "paper" else scaled_lr(n_latents, steps)

    def architecture(self, d: int) -> SAEConfig:
        """The SAE this run trains on d-dimensional embeddings."""
        return resolve(self, d)

    def training(self) -> dict[str, Any]:
        """The training parameters as config.json records them."""
        return {key: getattr(self, key) for key in TRAINING_KEYS}


@cache
def train_spec() -> ConfigSpec:
    """The `msae train` config: one model per registered variant, discriminated by `variant`."""
    models = tuple(
        create_model(
            f"{kind.label}Train",
            __base__=(TrainCommon, kind.Options),
            __module__=__name__,
            variant=(Literal[kind.name], opt(help="SAE variant (activation and loss)", pinned=True, group=SAE)),  # type: ignore[arg-type]
        )
        for kind in variants.trainable().values()
    )
    return ConfigSpec(models, discriminator="variant")


def train_config(**values: Any) -> TrainCommon:
    """A `msae train` config from keyword values (field names or option keys)."""
    return train_spec().build(values)


def make_config(variant: str, d: int, expansion: float, **options: Any) -> SAEConfig:
    """The architecture `msae train --variant VARIANT --expansion E [options]` gives on
    d-dimensional data (a shortcut for tests, benchmarks and notebooks)."""
    return train_config(variant=variant, embeddings="-", out="-", expansion=float(expansion), **options).architecture(d)
