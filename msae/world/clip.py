"""The world's tiny CLIP: an open_clip model config shipped in msae/assets and registered by name.

open_clip builds the model from its own classes (ModifiedResNet image tower, text transformer,
SimpleTokenizer); msae only ships the config and the trained weights.
"""

from __future__ import annotations

from pathlib import Path

WORLD_MODEL = "msae-world"
BUILTIN_TAG = "builtin"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def config_path() -> Path:
    """The open_clip model config of the world CLIP."""
    return ASSETS / f"{WORLD_MODEL}.json"


def builtin_weights_path() -> Path:
    """The shipped weights (fp16 safetensors) trained by `msae world train-clip`."""
    return ASSETS / f"{WORLD_MODEL}.safetensors"


def register_world_model() -> None:
    """Make `msae-world` a model name open_clip knows (idempotent)."""
    import open_clip

    if WORLD_MODEL not in open_clip.list_models():
        open_clip.add_model_config(config_path())
