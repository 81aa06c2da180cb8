"""Per-path accumulators of `msae evaluate`: one block of rows at a time, every metric of one
encoding path (dense, sparse, a progressive k), and the shared inputs (probe, classes, captions).

Per-path keys: `l0_zero_fraction` is the paper's L0 (fraction of latents at zero, higher = sparser),
`active` the number of active latents per sample (what SAE libraries call L0)."""

from __future__ import annotations

import functools
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from msae.config.evaluate import EvalOptions
from msae.evaluation.codes import Code
from msae.metrics import alignment, linear_probe, reconstruction, retention, sparsity
from msae.metrics.aggregate import RunningMoments
from msae.sae.model import SparseAutoencoder


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, family: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[family] += time.perf_counter() - start


@dataclass
class PathWork:
    """What one path computed on one block: its reconstruction and that reconstruction's
    comparison with x, and when CKNNA is estimated its latent k-NN graph and score."""

    x_hat: torch.Tensor
    comparison: reconstruction.Comparison
    graph: alignment.KnnGraph | None = None
    cknna: float | None = None


@dataclass
class Block:
    """One block of evaluation rows and what every path shares about it."""

    x: torch.Tensor  # raw embeddings on the device
    labels: np.ndarray | None
    first_row: int
    graph_x: alignment.KnnGraph | None = None  # k-NN of x, when CKNNA is estimated on this block
    probe_log_p: torch.Tensor | None = None
    class_index: torch.Tensor | None = None
    dense: PathWork | None = None  # the dense path's work, reused by codes equal to it (on some rows)

    @functools.cached_property
    def reference(self) -> reconstruction.Reference:
        """x's side of every path's reconstruction metrics, computed once per block."""
        return reconstruction.Reference.of(self.x)


@dataclass
class Context:
    """Inputs shared by all paths: the trained probe, class and caption embeddings."""

    sae: SparseAutoencoder
    options: EvalOptions
    timer: Timer
    probe: linear_probe.TrainedProbe | None = None
    class_embeddings: torch.Tensor | None = None
    captions: torch.Tensor | None = None  # in evaluation-row order: caption r pairs with row r


def _work(ctx: Context, block: Block, code: Code) -> PathWork:
    """One path's work on a block; where its code equals the dense one (`code.dense_except`),
    the dense path's: all of it for a code equal on every row, else the dense reconstruction with
    the other rows decoded, and the dense k-NN graph searched again only where they can change it."""
    timer, dense = ctx.timer, block.dense
    differs = code.dense_except if dense is not None else None
    if dense is not None and differs is not None and differs.numel() == 0:
        return dense
    with timer("decode"):
        if dense is None or differs is None:
            x_hat = code.decode(ctx.sae)
        else:
            x_hat = dense.x_hat.index_copy(0, differs, code.take(differs).decode(ctx.sae))
    with timer("reconstruction"):
        work = PathWork(x_hat, reconstruction.compare(block.reference, x_hat))
    if block.graph_x is not None:
        with timer("cknna"):
            z, entries = code.to_dense(), code.entries
            if dense is None or differs is None or dense.graph is None:
                work.graph = alignment.knn_graph(z, ctx.options.cknna_k, entries=entries)
            else:
                work.graph = alignment.update_knn_graph(dense.graph, z, differs, entries)
            work.cknna = alignment.cknna_from_graphs(block.graph_x, work.graph)
    return work


class PathMetrics:
    """Accumulates every per-path metric over the blocks of the evaluation set."""

    def __init__(self, n_latents: int) -> None:
        self.moments: dict[str, RunningMoments] = defaultdict(RunningMoments)
        self.dataset_fvu = reconstruction.DatasetFVU()
        self.activity = sparsity.LatentActivity(n_latents)
        self.cknna: list[float] = []

    def update(self, ctx: Context, block: Block, code: Code) -> PathWork:
        """Add one block's metrics of one path; returns its work on the block, which the caller
        stores in the block for the dense path so that codes equal to it reuse it."""
        timer = ctx.timer
        work = _work(ctx, block, code)
        x_hat = work.x_hat
        self.moments["fvu"].update(work.comparison.fvu)
        self.moments["cs"].update(work.comparison.cs)
        self.dataset_fvu.add(block.reference, work.comparison)
        with timer("sparsity"):
            active = code.active
            self.moments["l0_zero_fraction"].update(sparsity.zero_fraction(active, code.n))
            self.moments["active"].update(active)
            self.activity.update(code.latent_counts)
        if work.cknna is not None:
            self.cknna.append(work.cknna)
        if ctx.probe is not None and block.probe_log_p is not None:
            with timer("probe_eval"):
                recon_features = linear_probe.probe_features(x_hat, ctx.sae.mean, ctx.sae.scale)
                kl, agree = linear_probe.kl_and_agreement(block.probe_log_p, ctx.probe.log_probs(recon_features))
                self.moments["lp_kl"].update(kl)
                self.moments["lp_agree"].update(agree)
                if block.labels is not None:
                    self.moments["lp_acc_recon"].update(
                        linear_probe.label_hits(ctx.probe, recon_features, block.labels)
                    )
        if ctx.class_embeddings is not None or ctx.captions is not None:
            with timer("retention"):
                update_retention(ctx, block, x_hat, self.moments, "recon")
        return work

    def result(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for name in ("l0_zero_fraction", "active", "fvu", "cs", "lp_kl", "lp_agree"):
            if name in self.moments:
                out[name], out[f"{name}_std"] = self.moments[name].mean, self.moments[name].std
        for name in ("lp_acc_recon", "zeroshot_acc_recon", "recall1_recon", "recall5_recon"):
            if name in self.moments:
                out[name] = self.moments[name].mean
        out["fvu_dataset"] = self.dataset_fvu.value()
        valid = [c for c in self.cknna if math.isfinite(c)]
        if valid:
            out["cknna"], out["cknna_std"] = float(np.mean(valid)), float(np.std(valid))
        out["cknna_batches"] = len(valid)
        out["ndn"] = self.activity.never_active()
        return finite(out)


def finite(values: dict[str, Any]) -> dict[str, Any]:
    """Drop undefined (NaN/inf) values: metrics.json keeps absent keys rather than nulls."""
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    for key in bad:
        print(f"msae evaluate: warning: {key} is undefined on this set and is left out", file=sys.stderr)
    return {k: v for k, v in values.items() if k not in bad}


def update_retention(
    ctx: Context, block: Block, images: torch.Tensor, moments: dict[str, RunningMoments], suffix: str
) -> None:
    """Zero-shot hits and recall@1/@5 of `images` (the block's originals or reconstructions)."""
    if ctx.class_embeddings is not None:
        pred = retention.zero_shot_predict(images, ctx.class_embeddings)
        moments[f"zeroshot_acc_{suffix}"].update(torch.as_tensor(pred == block.class_index).double())
    if ctx.captions is not None:
        paired = torch.arange(block.first_row, block.first_row + images.shape[0])
        for k, hits in retention.recall_hits(retention.retrieval_ranks(images, ctx.captions, paired)).items():
            moments[f"recall{k}_{suffix}"].update(hits)
