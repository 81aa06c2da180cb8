"""`msae world render | train-clip | eval-clip`: the offline world and its tiny CLIP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from msae.config.base import ConfigError, PathOption, StageConfig, device_option, opt
from msae.world.attributes import ATTRIBUTES

# The world's shapes and colours as choices (built from the attribute table at import time).
Shape: Any = Literal[ATTRIBUTES["shape"]]
Color: Any = Literal[ATTRIBUTES["color"]]


class WorldParams(StageConfig):
    """The knobs of a rendered world that change what is drawn."""

    image_size: int = opt(64, "image side in pixels", ge=16)
    second_object_rate: float = opt(0.0, "probability of a second object behind the first", ge=0, le=1)
    bias_shape: Shape = opt("star", "target shape of the planted correlation in bias_train")
    bias_color: Color = opt("red", "colour given to the bias shape in bias_train")
    bias_rate: float = opt(0.9, "P(bias colour | bias shape) in bias_train", ge=0, le=1)

    def other_shape_bias_rate(self) -> float:
        """P(bias colour | another shape): the leftover mass of the bias shape, spread evenly."""
        return (1.0 - self.bias_rate) / (len(ATTRIBUTES["color"]) - 1)

    def world_params(self) -> dict[str, Any]:
        """Only the scene knobs (also of a subclass such as RenderConfig)."""
        return {key: getattr(self, key) for key in WorldParams.model_fields}


class RenderConfig(WorldParams):
    """Render images, captions and the manifest of the synthetic world (a `worlds:` entry)."""

    out: PathOption = opt(help="output directory (images/, manifest.parquet, world.json)")
    n_train: int = opt(20000, "images in the train split", ge=0, pinned=True)
    n_val: int = opt(2000, "images in the val split", ge=0, pinned=True)
    n_test: int = opt(2000, "images in the test split", ge=0, pinned=True)
    n_bias: int = opt(4000, "images in each bias split (bias_train, bias_control)", ge=0, pinned=True)
    seed: int = opt(0, "world seed: same seed, same bytes", ge=0, pinned=True)
    workers: int | None = opt(None, "render processes (default: one per CPU); does not change the output", ge=1)


class ClipTrainingOptions(StageConfig):
    """The parameters that decide the weights a world-CLIP run produces (its resume fingerprint)."""

    steps: int = opt(3000, "optimizer steps", ge=1)
    batch_size: int = opt(256, "image-caption pairs per step", ge=2)
    lr: float = opt(1e-3, "peak AdamW learning rate", gt=0)
    weight_decay: float = opt(0.1, "AdamW weight decay (not on gains, biases, logit scale)", ge=0)
    warmup: int = opt(40, "linear warm-up steps before the cosine decay", ge=0)
    seed: int = opt(0, "seed of the training scenes, batches and initial weights", ge=0)
    n_train: int = opt(200000, "size of the fixed set of training scenes", ge=1)
    hard_batch_rate: float = opt(0.5, "fraction of batches drawn from a few (colour, background) groups", ge=0, le=1)
    hard_groups: int = opt(4, "(colour, background) groups in a hard batch", ge=1)
    partial_caption_rate: float = opt(
        0.2, "fraction of captions naming the shape and a random subset of the other attributes", ge=0, le=1
    )
    generic_noun_rate: float = opt(
        0.0,
        "fraction of short captions saying 'shape' instead of the shape's name (ties zero-shot prompts to every shape)",
        ge=0,
        le=1,
    )
    generic_noun_from: int = opt(0, "first step that uses --generic-noun-rate (shapes are learnt first)", ge=0)
    image_size: int = opt(64, "rendered image side in pixels (the world CLIP's input size)", ge=16)

    @model_validator(mode="after")
    def _consistent(self) -> ClipTrainingOptions:
        problems = [
            (key, message)
            for key, ok, message in (
                ("warmup", self.warmup < self.steps, f"{self.warmup} must be less than steps ({self.steps})"),
                (
                    "n-train",
                    self.n_train >= self.batch_size,
                    f"{self.n_train} must be at least batch-size ({self.batch_size})",
                ),
                ("hard-groups", self.hard_groups <= self.batch_size, f"{self.hard_groups} must be at most batch-size"),
                (
                    "generic-noun-from",
                    self.generic_noun_from < self.steps,
                    f"{self.generic_noun_from} must be less than steps",
                ),
            )
            if not ok
        ]
        if problems:
            raise ConfigError(problems)
        return self

    def weight_parameters(self) -> dict[str, Any]:
        """What decides the trained weights (saved with checkpoints, compared on resume)."""
        return {key: getattr(self, key) for key in ClipTrainingOptions.model_fields}


class ClipTrainingConfig(ClipTrainingOptions):
    """Contrastive training of the world CLIP (ClipLoss, AdamW, warm-up + cosine)."""

    out: PathOption = opt(help="weights file to write (fp16 .safetensors); checkpoints go to <stem>.checkpoints/")
    checkpoint_every: int = opt(200, "steps between checkpoints (resumable state + fp16 snapshot)", ge=1)
    stop_after: int | None = opt(
        None, "stop at this step with a resumable checkpoint (continue later with --resume)", ge=1
    )
    resume: bool = opt(False, "continue from <stem>.checkpoints/state.pt")
    device: str = device_option()

    @model_validator(mode="after")
    def _weights_file(self) -> ClipTrainingConfig:
        if self.out.suffix != ".safetensors":
            raise ConfigError([("out", f"{self.out}: the weights file must end in .safetensors")])
        return self


class ClipEvalConfig(StageConfig):
    """Zero-shot attribute accuracy and image-caption recall on fresh held-out images."""

    weights: str = opt("builtin", "weights .safetensors, or 'builtin' for the shipped ones")
    n: int = opt(1000, "held-out images (and captions for recall)", ge=1)
    seed: int = opt(12345, "seed of the held-out world (use one different from training)", ge=0)
    out: PathOption | None = opt(None, "write the quality numbers to this JSON file")
    batch_size: int = opt(250, "images per forward pass", ge=1)
    device: str = device_option()
