"""Sparse autoencoders of the paper: one module, the variant (msae.sae.variants) supplies the
activations and loss terms.

Attributes are imported on first use, so torch-free parts (the variant registry, the architecture
config) can be used by the command line without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "load": "msae.sae.checkpoint",
    "save": "msae.sae.checkpoint",
    "SparseAutoencoder": "msae.sae.model",
    "SAEConfig": "msae.sae.architecture",
    "resolve": "msae.sae.architecture",
    "make_config": "msae.config.train",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
