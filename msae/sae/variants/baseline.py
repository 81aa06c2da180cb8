"""The `baseline` kind: classic dictionary methods fitted by `msae baseline` (msae.baselines)."""

from msae.baselines.variant import VARIANT

__all__ = ["VARIANT"]
