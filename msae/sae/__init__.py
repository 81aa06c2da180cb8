"""Sparse autoencoders of the paper: one module, the variant picks the activation."""

from msae.sae.checkpoint import load, save
from msae.sae.config import VARIANTS, SAEConfig, default_nesting, make_config
from msae.sae.model import SparseAutoencoder

__all__ = ["VARIANTS", "SAEConfig", "SparseAutoencoder", "default_nesting", "load", "make_config", "save"]
