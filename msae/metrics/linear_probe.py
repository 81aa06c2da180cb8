"""LP(KL) and LP(agreement): does a linear probe trained on the original embeddings predict the
same thing from the SAE's reconstructions? (docs/paper.md, linear probe)

Recipe (the reference's `linear_eval.py`): inputs are the embeddings centred and scaled with the
SAE's own training statistics, then L2-normalised; probe = nn.Linear(d, C) with bias, classes in
first-occurrence order of the training labels; AdamW (lr 1e-3, torch's default weight decay 0.01),
cross-entropy, batch 512, shuffled, up to 100 epochs, early stopping with patience 5 on macro-F1.

Differences from the reference code, all deliberate:
- the best state is really restored (a deep copy; the reference keeps a `state_dict()` reference,
  so its "restore" is a no-op and it uses the last epoch's probe);
- early stopping watches a held-out part of the *training* split (seeded), not the evaluation set
  the metrics are then reported on (the reference early-stops on its evaluation set);
- an epoch improves on the best when its held-out macro-F1 is higher *or equal with a lower
  held-out cross-entropy*: on small training sets the first epochs all predict one class (equal
  F1), and F1 alone stopped training there, leaving a constant probe whose agreement is a
  meaningless 1.0; on large sets F1 ties are rare and this is the reference's rule;
- no ReduceLROnPlateau: with patience 5 on both, early stopping fires first in practice, so the
  reference trains at a constant learning rate anyway;
- KL is computed from log-softmax (the reference takes log of softmax, which gives inf/NaN when a
  probability underflows);
- "LP(Acc)" in the reference is prediction agreement; here it is `agreement`, and the probe's
  accuracy against true labels is reported separately.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import f1_score


@dataclass
class TrainedProbe:
    """A trained probe, its class names (output order) and its training history."""

    linear: torch.nn.Linear
    classes: list[str]
    best_epoch: int
    best_f1: float
    holdout_f1: list[float] = field(default_factory=list)

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """log p(class | x) in float64, [B, C]."""
        with torch.no_grad():
            logits = self.linear(features.to(self.linear.weight.device, self.linear.weight.dtype))
        return torch.log_softmax(logits.double(), dim=1)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.log_probs(features).argmax(dim=1)


def probe_features(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """The probe's input: (x − μ)·s, then L2-normalised per sample (so a scalar s cancels)."""
    return torch.nn.functional.normalize((x - mean) * scale, dim=1)


def _macro_f1(model: torch.nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> float:
    return _holdout_score(model, features, targets)[0]


def _holdout_score(model: torch.nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(macro-F1, −cross-entropy) on held-out rows: compared lexicographically."""
    with torch.no_grad():
        logits = model(features)
    f1 = float(f1_score(targets.cpu().numpy(), logits.argmax(dim=1).cpu().numpy(), average="macro"))
    return f1, -float(torch.nn.functional.cross_entropy(logits, targets))


def train_probe(
    features: torch.Tensor,
    labels: Sequence[str],
    *,
    seed: int = 42,
    holdout: float = 0.1,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    batch_size: int = 512,
    max_epochs: int = 100,
    patience: int = 5,
) -> TrainedProbe:
    """Train the linear probe on `features` ([N, d], already `probe_features`) and string labels,
    keeping the state with the best held-out macro-F1. Deterministic for a given seed."""
    labels = [str(v) for v in labels]
    if len(labels) != features.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows but {len(labels)} labels")
    classes = list(dict.fromkeys(labels))
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least 2 classes, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    device = features.device
    targets = torch.tensor([index[v] for v in labels], dtype=torch.int64, device=device)
    gen = torch.Generator().manual_seed(seed)
    n = features.shape[0]
    n_hold = int(round(holdout * n))
    if not 1 <= n_hold < n:
        raise ValueError(f"holdout {holdout} of {n} rows leaves no training or no held-out rows")
    perm = torch.randperm(n, generator=gen).to(device)
    hold, train = perm[:n_hold], perm[n_hold:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = torch.nn.Linear(features.shape[1], len(classes)).to(device, features.dtype)
    optim = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=weight_decay)
    best_score, best_epoch, best_state, bad, history = (-1.0, -math.inf), -1, None, 0, []
    for epoch in range(max_epochs):
        order = train[torch.randperm(len(train), generator=gen).to(device)]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optim.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(linear(features[batch]), targets[batch])
            loss.backward()
            optim.step()
        score = _holdout_score(linear, features[hold], targets[hold])
        history.append(score[0])
        if score > best_score:
            best_score, best_epoch, best_state, bad = score, epoch, copy.deepcopy(linear.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    assert best_state is not None  # the first epoch always sets it
    linear.load_state_dict(best_state)
    linear.eval()
    return TrainedProbe(
        linear=linear, classes=classes, best_epoch=best_epoch, best_f1=best_score[0], holdout_f1=history
    )


def compare_predictions(
    probe: TrainedProbe, original: torch.Tensor, reconstructed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample KL(p_orig ‖ p_recon) in nats and argmax agreement (0/1), both float64 [B].
    Inputs are `probe_features` of the original and reconstructed embeddings."""
    return kl_and_agreement(probe.log_probs(original), probe.log_probs(reconstructed))


def kl_and_agreement(log_p: torch.Tensor, log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) and argmax agreement, from log-probs."""
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    agree = (log_p.argmax(dim=1) == log_q.argmax(dim=1)).double()
    return kl.cpu(), agree.cpu()


def label_hits(probe: TrainedProbe, features: torch.Tensor, labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """1.0 where the probe predicts the true label, else 0.0 (labels unseen in training count as
    misses). float64 [B]."""
    names = np.asarray(probe.classes, dtype=object)[probe.predict(features).cpu().numpy()]
    return (names == np.asarray([str(v) for v in labels], dtype=object)).astype(np.float64)
