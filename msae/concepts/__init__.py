"""Concept extraction: name SAE latents from a vocabulary, decide which names are valid, score
them against known attributes and show their top images (naming, activity, validity,
groundtruth, gallery; `extract_concepts` runs the stage)."""

from msae.concepts.extract import extract_concepts
from msae.concepts.naming import GAPS, METHODS, Ranking, rank_terms
from msae.concepts.null import FalsePositives, NullModel, assess, false_positive_rate, fit_null
from msae.concepts.validity import ValidityRule

__all__ = [
    "GAPS",
    "METHODS",
    "FalsePositives",
    "NullModel",
    "Ranking",
    "ValidityRule",
    "assess",
    "extract_concepts",
    "false_positive_rate",
    "fit_null",
    "rank_terms",
]
