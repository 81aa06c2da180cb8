"""The paper's two downstream uses of an SAE: concept-controlled similarity search and
counterfactual bias analysis. Both edit one dense latent with the SAE residual kept
(msae.probes.intervention)."""

from msae.probes.concepts import Concept, load_latent_table, resolve_concepts, valid_concepts
from msae.probes.intervention import MODES, edit, edited_value
from msae.probes.run import run_bias, run_similarity

__all__ = [
    "MODES",
    "Concept",
    "edit",
    "edited_value",
    "load_latent_table",
    "resolve_concepts",
    "run_bias",
    "run_similarity",
    "valid_concepts",
]
