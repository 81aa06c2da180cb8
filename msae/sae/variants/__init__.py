"""The registry of SAE variants: every module of this package defines one `VARIANT`.

Nothing else in msae compares variant names: the model, training, evaluation, the report and the
command line ask the variant object for what they need.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from msae.errors import MsaeError
from msae.sae.variants.base import Variant, VariantOptions

__all__ = ["Variant", "VariantOptions", "get", "registry", "trainable"]


@cache
def registry() -> dict[str, Variant]:
    """name -> variant, in the paper's table order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(module.VARIANT)
    return {v.name: v for v in sorted(found, key=lambda v: (v.order, v.name))}


def trainable() -> dict[str, Variant]:
    """The variants `msae train` offers (not the baselines, fitted by `msae baseline`)."""
    return {name: v for name, v in registry().items() if v.trainable}


def get(name: str) -> Variant:
    """The variant called `name`; MsaeError listing the known ones otherwise."""
    variants = registry()
    if name not in variants:
        raise MsaeError(f"unknown SAE variant {name!r} (known: {', '.join(variants)})")
    return variants[name]
