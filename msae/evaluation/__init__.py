"""`msae evaluate`: every metric of the paper plus CLIP-native retention (see msae.evaluation.run)."""

from msae.evaluation.run import Evaluation, evaluate, evaluate_run, progressive_ks, write_outputs

__all__ = ["Evaluation", "evaluate", "evaluate_run", "progressive_ks", "write_outputs"]
