"""`msae reseed`: train a finished run again with another seed and nothing else changed (the seed
replicas of the stability stage). The run's options are read back from its config.json, so the
replica cannot drift from the run it repeats. Torch-free, like every stage config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from msae.config.base import ConfigError, PathOption, StageConfig, device_option, opt
from msae.config.train import TRAINING_KEYS, TrainCommon, train_config
from msae.errors import MsaeError
from msae.io import read_json_object
from msae.layout import CONFIG_FILE
from msae.sae import variants

COMMON_KEYS = ("loss", "scale_mode", "auxk_alpha")  # SAEConfig fields that are `msae train` options


class ReseedConfig(StageConfig):
    """Train the run in `sae` again at `seed` into `out`."""

    sae: PathOption = opt(help="finished SAE run to repeat (results/sae/<run>)")
    seed: int = opt(help="the replica's seed", ge=0)
    device: str = device_option()
    out: PathOption = opt(help="replica directory, e.g. results/seeds/<run>/<seed>/")


def replica_config(config: ReseedConfig) -> TrainCommon:
    """The `msae train` config of the replica: every option of the run's config.json, its seed
    replaced (n = int(expansion x d) is met exactly by expansion = (n + 1/2) / d)."""
    record = read_json_object(Path(config.sae) / CONFIG_FILE, "not a finished SAE run (train it with msae train)")
    try:
        kind = variants.get(str(record.get("variant")))
        d, n = int(record["d"]), int(record["n_latents"])
        training = record["training"]
        embeddings = record["data"]["path"]
    except (KeyError, TypeError, ValueError) as exc:
        raise MsaeError(f"{config.sae}/{CONFIG_FILE}: not a run msae train wrote ({exc!r} missing)") from exc
    arch = {key: record[key] for key in kind.Architecture.model_fields if key in record}
    values: dict[str, Any] = {
        "variant": kind.name,
        "expansion": (n + 0.5) / d,
        "embeddings": embeddings,
        "out": config.out,
        "device": config.device,
        **{key: record[key] for key in COMMON_KEYS if key in record},
        **{key: training[key] for key in TRAINING_KEYS if key in training},
        **arch,
        "seed": config.seed,
    }
    if record.get("auxk_alpha"):
        values["auxk_k"] = record.get("auxk_k")
    try:
        return train_config(**values)
    except ConfigError as exc:
        raise MsaeError(f"{config.sae}/{CONFIG_FILE}: cannot be trained again ({exc})") from exc
