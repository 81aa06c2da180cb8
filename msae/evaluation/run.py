"""`msae evaluate`: stream an embedding store through a trained SAE and compute every metric of
the paper plus CLIP-native retention, on two paths:

- dense: ReLU over all latents (what the paper's tables report);
- sparse: the model's own inference activation (Matryoshka: its smallest nesting level);
- progressive: the top-k of the dense latents for each k of one grid shared by every variant
  (16, 32, ... doubling up to n, plus n: the official score_topk grid), so curves compare at the
  same k.

Each block's pre-activations are computed once; top-k paths are decoded from their k entries per
sample (msae.evaluation.codes), and a path equal to the dense one on a block reuses its work.

Everything is computed in RAW embedding space. The store is read in record batches and processed
in blocks of `cknna_batch` rows (one CKNNA estimate per full block, as the official code; a set
smaller than one block gives one estimate), so memory is bounded by the block, not the set.

Differences from the official scripts, by design (docs/paper.md): the SAE's own training mean and
scale are always used (the official code switches to the evaluation set's statistics depending on
substrings of the paths); blocks are consecutive rows of the file (the official code shuffles
with seed 42), so a store sorted by class gives CKNNA estimates on class-sorted batches: shuffle
such a store's rows.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from msae import store
from msae.config.evaluate import EvalOptions, EvaluateConfig
from msae.errors import MsaeError
from msae.evaluation.accumulate import Block, Context, PathMetrics, Timer, finite
from msae.evaluation.codes import block_codes
from msae.evaluation.inputs import block_originals, blocks, check_inputs, load_classes, pair_captions, train_probe
from msae.identity import identity_block
from msae.io import check_output, staged_dir, write_json_atomic, write_text_atomic
from msae.layout import METRICS_FILE, PROGRESSIVE_FILE
from msae.metrics import alignment
from msae.metrics.aggregate import RunningMoments
from msae.metrics.dictionary import decoder_orthogonality
from msae.sae.model import SparseAutoencoder


@dataclass
class Evaluation:
    """What `evaluate` returns: metrics.json content, progressive.csv rows, seconds per family."""

    metrics: dict[str, Any]
    progressive: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def progressive_ks(sae: SparseAutoencoder) -> list[int]:
    """The k grid of progressive recovery, the same for every variant: 16, 32, ... doubling while
    <= n, plus n."""
    n = sae.config.n_latents
    ks = [k for k in (16 * 2**i for i in range(64)) if k <= n]
    return ks + [n] if not ks or ks[-1] != n else ks


def _path_plan(sae: SparseAutoencoder, sparse_k: int | None) -> tuple[list[str], dict[str, str]]:
    """Distinct codes to evaluate ("dense", "sparse", "k=<k>") and, for each reported path
    (sparse, dense, each progressive k), which code gives it: top-k of ReLU(a) with k = n is the
    dense path, and where the variant's sparse path is a top-k (at `sparse_k`) it is reused."""
    n = sae.config.n_latents
    encodings = ["dense", "sparse"]
    source = {"dense": "dense", "sparse": "sparse"}
    for k in progressive_ks(sae):
        name = f"k={k}"
        source[name] = "dense" if k >= n else "sparse" if k == sparse_k else name
        if source[name] == name:
            encodings.append(name)
    return encodings, source


def _prepare(
    sae: SparseAutoencoder, options: EvalOptions, timer: Timer
) -> tuple[Context, dict[str, Any], int, list[str], list[str] | None]:
    """Check the stores and set up what every block shares: the trained probe, class prompts and
    captions. Returns (context, evaluation metadata, rows, columns, class names)."""
    embeddings = options.embeddings
    device = sae.W_dec.device
    eval_meta, n_rows, columns = check_inputs(sae, embeddings, options.modality)
    ctx = Context(sae=sae, options=options, timer=timer)
    class_names: list[str] | None = None
    if options.probe_train is not None:
        with timer("probe_train"):
            store.require_same_backbone(
                store.read_meta(options.probe_train),
                str(options.probe_train),
                eval_meta,
                f"{embeddings} was embedded with",
            )
            with torch.enable_grad():
                train_probe(ctx, options.probe_train, device)
    with timer("retention_setup"):
        if options.class_embeddings is not None:
            if "label" not in columns:
                raise MsaeError(
                    f"{embeddings}: zero-shot evaluation needs a 'label' column (has: {', '.join(columns)})"
                )
            class_names = load_classes(ctx, options.class_embeddings, eval_meta, embeddings, device)
        if options.text_embeddings is not None:
            pair_captions(ctx, options.text_embeddings, eval_meta, embeddings, device)
    return ctx, eval_meta, n_rows, columns, class_names


def evaluate(sae: SparseAutoencoder, options: EvalOptions, progress: bool = True) -> Evaluation:
    """All metrics of `sae` (a loaded `msae.sae` module, in eval mode) on `options.embeddings`."""
    timer = Timer()
    device = sae.W_dec.device
    with torch.no_grad():
        ctx, _, n_rows, columns, class_names = _prepare(sae, options, timer)
        wanted = ["label"] if "label" in columns and (ctx.probe is not None or class_names is not None) else []
        sparse_k = sae.kind.sparse_topk(sae.config.arch)
        encodings, source = _path_plan(sae, sparse_k)
        ks = [int(name[2:]) for name in encodings if name.startswith("k=")]
        paths = {name: PathMetrics(sae.config.n_latents) for name in encodings}
        original: dict[str, RunningMoments] = defaultdict(RunningMoments)
        class_lookup = {name: i for i, name in enumerate(class_names or [])}
        first_row, cknna_blocks = 0, 0
        for x_np, cols in blocks(options.embeddings, options, wanted, n_rows, progress):
            labels = cols["label"].astype(str).to_numpy() if wanted else None
            block = Block(x=torch.from_numpy(x_np).to(device), labels=labels, first_row=first_row)
            first_row += len(x_np)
            full = len(x_np) == options.cknna_batch or n_rows < options.cknna_batch
            wanted_more = options.cknna_max_batches is None or cknna_blocks < options.cknna_max_batches
            if full and wanted_more and len(x_np) > options.cknna_k:
                cknna_blocks += 1
                with timer("cknna"):
                    block.graph_x = alignment.knn_graph(block.x, options.cknna_k)
            block_originals(ctx, block, original, class_lookup, options.embeddings)
            with timer("encode"):
                codes = block_codes(sae, block.x, ks, sparse_k)
            for name in encodings:  # "dense" first: codes equal to it reuse its work
                work = paths[name].update(ctx, block, codes[name])
                if name == "dense":
                    block.dense = work
        results = {name: acc.result() for name, acc in paths.items()}
        with timer("do"):
            do = decoder_orthogonality(sae.W_dec)
    metrics = _assemble(sae, n_rows, results, source, original, do)
    progressive = pd.DataFrame(
        [{"k": int(name[2:]), **results[src]} for name, src in source.items() if name.startswith("k=")]
    )
    return Evaluation(metrics=metrics, progressive=progressive, seconds=dict(timer.seconds))


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _assemble(
    sae: SparseAutoencoder,
    n_rows: int,
    results: dict[str, dict[str, Any]],
    source: dict[str, str],
    original: dict[str, RunningMoments],
    do: float,
) -> dict[str, Any]:
    """metrics.json (docs/internals.md): flat, stable keys; absent rather than null."""
    dense, sparse = results[source["dense"]], results[source["sparse"]]
    out: dict[str, Any] = {
        "variant": sae.config.variant,
        "n_latents": sae.config.n_latents,
        "d": sae.config.d,
        "n_eval": n_rows,
        "dense": dense,
        "sparse": sparse,
        "do": do,
        "ndn": dense["ndn"],
        "ndn_sparse": sparse["ndn"],
    }
    if sae.record is not None and sae.record.final_dead_latents is not None:
        out["ndn_train"] = sae.record.final_dead_latents
    for key in (
        "lp_kl",
        "lp_kl_std",
        "lp_agree",
        "lp_agree_std",
        "lp_acc_recon",
        "zeroshot_acc_recon",
        "recall1_recon",
        "recall5_recon",
    ):
        if key in dense:
            out[key] = dense[key]
    for key, moments in original.items():
        out[key] = moments.mean
    for stem in ("zeroshot", "recall1", "recall5"):
        orig_key = "zeroshot_acc_orig" if stem == "zeroshot" else f"{stem}_orig"
        recon_key = "zeroshot_acc_recon" if stem == "zeroshot" else f"{stem}_recon"
        ratio = _ratio(out.get(recon_key), out.get(orig_key))
        if ratio is not None:
            out[f"{stem}_retained"] = ratio
    return finite(out)


def write_outputs(result: Evaluation, out_dir: str | os.PathLike[str]) -> Path:
    """progressive.csv, then metrics.json (the 'done' file), staged: an earlier evaluation in
    `out_dir` is replaced only once both are written."""
    out = Path(out_dir)
    with staged_dir(out, METRICS_FILE) as stage:
        write_text_atomic(stage / PROGRESSIVE_FILE, result.progressive.to_csv(index=False))
        write_json_atomic(stage / METRICS_FILE, result.metrics)
    return out


def evaluate_run(config: EvaluateConfig) -> Evaluation:
    """`msae evaluate`: load the SAE, evaluate it, write progressive.csv then metrics.json."""
    from msae.runtime import configure_torch, resolve_device, seed_everything
    from msae.sae import load

    check_output(config.out, folder=True)
    configure_torch()
    seed_everything(config.seed)
    sae = load(config.sae, device=resolve_device(config.device))
    result = evaluate(sae, config)
    result.metrics["identity"] = identity_block(  # the hashes of the SAE and the stores it was computed from
        config.sae,
        embeddings=config.embeddings,
        probe_train=config.probe_train,
        text_embeddings=config.text_embeddings,
        class_embeddings=config.class_embeddings,
    )
    write_outputs(result, config.out)
    return result
