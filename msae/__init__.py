"""msae: sparse autoencoders that interpret CLIP, run as a reproducible pipeline."""

__version__ = "0.1.0"
