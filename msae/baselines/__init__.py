"""Classic dictionary methods as baselines for the SAEs: PCA, ICA, k-means, dictionary learning
with OMP, and NMF, fitted with scikit-learn (`msae baseline`) and stored as SAE run directories of
the `baseline` kind, so they load with `msae.sae.load` and go through evaluate, concepts and the
report like any SAE (msae.baselines.variant explains how each method becomes an encoder, a coder
and a decoder)."""
