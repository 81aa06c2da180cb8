"""Evaluation metrics of an SAE, one module per family (docs/paper.md lists the definitions).

Every function here takes plain tensors/arrays, so the metrics are testable without a trained
model; `msae.evaluate` streams an embedding store through an SAE and feeds these functions.
"""
