"""`msae evaluate`: stream an embedding store through a trained SAE and compute every metric of
the paper (msae-reference §4, §5) plus CLIP-native retention, on two paths (DESIGN §4):

- dense: ReLU over all latents (what the paper's tables report);
- sparse: the model's own inference activation (Matryoshka: its smallest nesting level);
- progressive: the top-k of the dense latents for each k of the Matryoshka nesting list, or
  16, 32, ... doubling up to n plus n for the other variants (the reference's score_topk).

Everything is computed in RAW embedding space. The store is read in record batches and processed
in blocks of `cknna_batch` rows (one CKNNA estimate per full block, as the reference; a set smaller
than one block gives one estimate), so memory is bounded by the block, not the set.

Differences from the reference scripts, by design: the SAE's own training mean and scale are always
used (the reference switches to the evaluation set's statistics depending on substrings of the
paths, trap 7); blocks are consecutive rows of the file (the reference shuffles with seed 42), so a
store sorted by class gives CKNNA estimates on class-sorted batches: shuffle such a store's rows.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from msae import store
from msae.errors import MsaeError
from msae.io import write_json_atomic, write_text_atomic
from msae.metrics import alignment, probe, reconstruction, retention, sparsity
from msae.metrics.aggregate import RunningMoments
from msae.metrics.dictionary import decoder_orthogonality

METRICS_FILE = "metrics.json"
PROGRESSIVE_FILE = "progressive.csv"


@dataclass
class EvalOptions:
    """Every parameter that changes a result of `msae evaluate`."""

    batch_size: int = 10000
    cknna_batch: int = 10000
    cknna_k: int = 10
    cknna_max_batches: int | None = None  # None: every full batch (the reference protocol)
    seed: int = 42
    probe_train: Path | None = None
    probe_holdout: float = 0.1
    probe_lr: float = 1e-3
    probe_batch_size: int = 512
    probe_max_epochs: int = 100
    probe_patience: int = 5
    text_embeddings: Path | None = None
    class_embeddings: Path | None = None
    progress: bool = True


@dataclass
class Evaluation:
    """What `evaluate` returns: metrics.json content, progressive.csv rows, seconds per family."""

    metrics: dict[str, Any]
    progressive: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


class _Timer:
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
class _Block:
    """One block of evaluation rows and what every path shares about it."""

    x: torch.Tensor  # raw embeddings on the device
    labels: np.ndarray | None
    first_row: int
    graph_x: alignment.KnnGraph | None = None  # k-NN of x, when CKNNA is estimated on this block
    probe_log_p: torch.Tensor | None = None
    class_index: torch.Tensor | None = None


@dataclass
class _Context:
    """Inputs shared by all paths: the trained probe, class and caption embeddings."""

    sae: torch.nn.Module
    options: EvalOptions
    timer: _Timer
    probe: probe.TrainedProbe | None = None
    class_embeddings: torch.Tensor | None = None
    captions: torch.Tensor | None = None  # in evaluation-row order: caption r pairs with row r


class _PathMetrics:
    """Accumulates every per-path metric over the blocks of the evaluation set."""

    def __init__(self, n_latents: int) -> None:
        self.moments: dict[str, RunningMoments] = defaultdict(RunningMoments)
        self.dataset_fvu = reconstruction.DatasetFVU()
        self.activity = sparsity.LatentActivity(n_latents)
        self.cknna: list[float] = []

    def update(self, ctx: _Context, block: _Block, z: torch.Tensor) -> None:
        timer = ctx.timer
        with timer("decode"):
            x_hat = ctx.sae.decode(z)
        x = block.x
        with timer("reconstruction"):
            self.moments["fvu"].update(reconstruction.fvu_per_sample(x, x_hat))
            self.moments["cs"].update(reconstruction.cosine_per_sample(x, x_hat))
            self.dataset_fvu.update(x, x_hat)
        with timer("sparsity"):
            self.moments["l0"].update(sparsity.zero_fraction(z))
            self.moments["active"].update(sparsity.active_count(z))
            self.activity.update(z)
        if block.graph_x is not None:
            with timer("cknna"):
                graph_z = alignment.knn_graph(z, ctx.options.cknna_k)
                self.cknna.append(alignment.cknna_from_graphs(x, z, block.graph_x, graph_z))
        if ctx.probe is not None:
            with timer("probe_eval"):
                recon_features = probe.probe_features(x_hat, ctx.sae.mean, ctx.sae.scale)
                kl, agree = probe.kl_and_agreement(block.probe_log_p, ctx.probe.log_probs(recon_features))
                self.moments["lp_kl"].update(kl)
                self.moments["lp_agree"].update(agree)
                if block.labels is not None:
                    self.moments["lp_acc_recon"].update(probe.label_hits(ctx.probe, recon_features, block.labels))
        if ctx.class_embeddings is not None or ctx.captions is not None:
            with timer("retention"):
                _update_retention(ctx, block, x_hat, self.moments, "recon")

    def result(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for name in ("l0", "active", "fvu", "cs", "lp_kl", "lp_agree"):
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
        return _finite(out)


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """Drop undefined (NaN/inf) values: metrics.json keeps absent keys rather than nulls."""
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    for key in bad:
        print(f"msae evaluate: warning: {key} is undefined on this set and is left out", file=sys.stderr)
    return {k: v for k, v in values.items() if k not in bad}


def progressive_ks(sae: torch.nn.Module) -> list[int]:
    """The k grid of progressive recovery: Matryoshka's nesting list; otherwise the reference's
    16, 32, ... doubling while <= n, plus n."""
    n = sae.config.n_latents
    if sae.config.variant == "matryoshka":
        return list(sae.config.nesting)
    ks = [k for k in (16 * 2**i for i in range(64)) if k <= n]
    return ks + [n] if not ks or ks[-1] != n else ks


def _path_plan(sae: torch.nn.Module) -> tuple[dict[str, int | None | str], dict[str, str]]:
    """Distinct encodings to compute ("dense", "sparse", "k=<k>") and, for each reported path
    (sparse, dense, each progressive k), which encoding gives it. top-k of ReLU(a) with k = n is
    the dense path, and for TopK/Matryoshka the sparse path is the top-k at its (smallest) k."""
    n = sae.config.n_latents
    encodings: dict[str, int | None | str] = {"dense": "dense", "sparse": None}
    sparse_k = sae.sparse_levels()[0] if sae.config.variant in ("topk", "matryoshka") else None
    source = {"dense": "dense", "sparse": "sparse"}
    for k in progressive_ks(sae):
        if k >= n:
            source[f"k={k}"] = "dense"
        elif k == sparse_k:
            source[f"k={k}"] = "sparse"
        else:
            encodings[f"k={k}"] = k
            source[f"k={k}"] = f"k={k}"
    return encodings, source


def _encode(sae: torch.nn.Module, x: torch.Tensor, how: int | None | str) -> torch.Tensor:
    if how == "dense":
        return sae.encode_dense(x)
    return sae.encode(x, k=how)


def _check_inputs(sae: torch.nn.Module, sae_dir: Path, embeddings: Path) -> tuple[dict[str, Any], int, list[str]]:
    meta = store.read_meta(embeddings)
    if int(meta["dim"]) != sae.config.d:
        raise MsaeError(f"{embeddings}: embeddings have dim {meta['dim']} but the SAE {sae_dir} expects d={sae.config.d}")
    n_rows = store.count_rows(embeddings)
    if n_rows == 0:
        raise MsaeError(f"{embeddings}: the evaluation set is empty (0 rows)")
    data = getattr(sae, "info", {}).get("data") or {}
    if data.get("model") is not None and data.get("pretrained") is not None:
        store.require_same_backbone(meta, str(embeddings), data, f"the SAE in {sae_dir} was trained on")
    columns = pq.read_schema(embeddings).names
    return meta, n_rows, columns


def _train_probe(ctx: _Context, path: Path, device: torch.device) -> None:
    opts = ctx.options
    data = store.read_embeddings(path, columns=["label"], expect_dim=ctx.sae.config.d)
    x = torch.tensor(data.embeddings, device=device)
    with torch.no_grad():
        features = probe.probe_features(x, ctx.sae.mean, ctx.sae.scale)
    try:
        ctx.probe = probe.train_probe(
            features, data.columns["label"].astype(str).tolist(), seed=opts.seed, holdout=opts.probe_holdout,
            lr=opts.probe_lr, batch_size=opts.probe_batch_size, max_epochs=opts.probe_max_epochs, patience=opts.probe_patience,
        )
    except ValueError as exc:
        raise MsaeError(f"{path}: cannot train the linear probe: {exc}") from exc


def _load_classes(ctx: _Context, path: Path, eval_meta: dict[str, Any], eval_path: Path, device: torch.device) -> list[str]:
    classes = store.read_embeddings(path, columns=["label"], expect_dim=ctx.sae.config.d)
    store.require_same_backbone(classes.meta, str(path), eval_meta, f"{eval_path} was embedded with")
    names = classes.columns["label"].astype(str).tolist()
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MsaeError(f"{path}: one row per class expected; repeated labels: {', '.join(duplicated[:10])}")
    ctx.class_embeddings = torch.tensor(classes.embeddings, device=device)
    return names


def _load_captions(ctx: _Context, path: Path, eval_meta: dict[str, Any], eval_path: Path, device: torch.device) -> None:
    captions = store.read_embeddings(path, columns=[], expect_dim=ctx.sae.config.d)
    store.require_same_backbone(captions.meta, str(path), eval_meta, f"{eval_path} was embedded with")
    if captions.meta.get("modality") != "text":
        raise MsaeError(f"{path}: --text-embeddings must be a text store, got modality {captions.meta.get('modality')!r}")
    if eval_meta.get("modality") != "image":
        raise MsaeError(f"{eval_path}: image->text retrieval needs an image store, got modality {eval_meta.get('modality')!r}")
    position = pd.Series(np.arange(len(captions.ids)), index=captions.ids)
    eval_ids = pq.read_table(eval_path, columns=["id"]).column("id").to_pylist()
    missing = [i for i in eval_ids if i not in position.index]
    if missing:
        raise MsaeError(f"{path}: no caption for {len(missing)} evaluation id(s) of {eval_path}, e.g. {', '.join(missing[:10])}")
    rows = position.loc[eval_ids].to_numpy()
    ctx.captions = torch.tensor(captions.embeddings[rows], device=device)


def _blocks(path: Path, options: EvalOptions, columns: list[str], n_rows: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Blocks of `cknna_batch` consecutive rows (the last one partial), read in record batches."""
    pending_x: list[np.ndarray] = []
    pending_cols: list[pd.DataFrame] = []
    have = 0
    bar = tqdm(total=n_rows, unit="rows", desc="evaluate", disable=not options.progress, file=sys.stderr)
    for part in store.iter_embeddings(path, batch_rows=options.batch_size, columns=columns):
        pending_x.append(part.embeddings)
        pending_cols.append(part.columns)
        have += len(part)
        while have >= options.cknna_batch:
            x, cols = np.concatenate(pending_x), pd.concat(pending_cols, ignore_index=True)
            yield x[: options.cknna_batch], cols.iloc[: options.cknna_batch].reset_index(drop=True)
            bar.update(options.cknna_batch)
            pending_x, pending_cols = [x[options.cknna_batch :]], [cols.iloc[options.cknna_batch :].reset_index(drop=True)]
            have -= options.cknna_batch
    if have:
        yield np.concatenate(pending_x), pd.concat(pending_cols, ignore_index=True)
        bar.update(have)
    bar.close()


def evaluate(
    sae: torch.nn.Module,
    embeddings: str | os.PathLike[str],
    options: EvalOptions | None = None,
    sae_dir: str | os.PathLike[str] = "<sae>",
) -> Evaluation:
    """All metrics of `sae` (a loaded `msae.sae` module, in eval mode) on an embedding store."""
    options = options or EvalOptions()
    if options.batch_size < 1 or options.cknna_batch < 4:
        raise MsaeError(f"--batch-size must be >= 1 and --cknna-batch >= 4 (got {options.batch_size}, {options.cknna_batch})")
    if options.cknna_max_batches is not None and options.cknna_max_batches < 1:
        raise MsaeError(f"--cknna-max-batches must be >= 1 (got {options.cknna_max_batches})")
    embeddings, sae_dir = Path(embeddings), Path(sae_dir)
    timer = _Timer()
    device = sae.W_dec.device
    eval_meta, n_rows, columns = _check_inputs(sae, sae_dir, embeddings)
    ctx = _Context(sae=sae, options=options, timer=timer)
    class_names: list[str] | None = None
    with torch.no_grad():
        if options.probe_train is not None:
            with timer("probe_train"):
                store.require_same_backbone(store.read_meta(options.probe_train), str(options.probe_train), eval_meta, f"{embeddings} was embedded with")
                with torch.enable_grad():
                    _train_probe(ctx, Path(options.probe_train), device)
        with timer("retention_setup"):
            if options.class_embeddings is not None:
                if "label" not in columns:
                    raise MsaeError(f"{embeddings}: zero-shot evaluation needs a 'label' column (has: {', '.join(columns)})")
                class_names = _load_classes(ctx, Path(options.class_embeddings), eval_meta, embeddings, device)
            if options.text_embeddings is not None:
                _load_captions(ctx, Path(options.text_embeddings), eval_meta, embeddings, device)
        wanted = ["label"] if "label" in columns and (ctx.probe is not None or class_names is not None) else []
        encodings, source = _path_plan(sae)
        paths = {name: _PathMetrics(sae.config.n_latents) for name in encodings}
        original: dict[str, RunningMoments] = defaultdict(RunningMoments)
        class_lookup = {name: i for i, name in enumerate(class_names or [])}
        first_row, cknna_blocks = 0, 0
        for x_np, cols in _blocks(embeddings, options, wanted, n_rows):
            block = _Block(x=torch.from_numpy(x_np).to(device), labels=cols["label"].astype(str).to_numpy() if wanted else None, first_row=first_row)
            first_row += len(x_np)
            full = len(x_np) == options.cknna_batch or n_rows < options.cknna_batch
            wanted_more = options.cknna_max_batches is None or cknna_blocks < options.cknna_max_batches
            if full and wanted_more and len(x_np) > options.cknna_k:
                cknna_blocks += 1
                with timer("cknna"):
                    block.graph_x = alignment.knn_graph(block.x, options.cknna_k)
            _block_originals(ctx, block, original, class_lookup, embeddings)
            for name, how in encodings.items():
                with timer("encode"):
                    z = _encode(sae, block.x, how)
                paths[name].update(ctx, block, z)
        results = {name: acc.result() for name, acc in paths.items()}
        with timer("do"):
            do = decoder_orthogonality(sae.W_dec)
    metrics = _assemble(sae, n_rows, results, source, original, do)
    progressive = pd.DataFrame([{"k": int(name[2:]), **results[src]} for name, src in source.items() if name.startswith("k=")])
    return Evaluation(metrics=metrics, progressive=progressive, seconds=dict(timer.seconds))


def _block_originals(ctx: _Context, block: _Block, original: dict[str, RunningMoments], class_lookup: dict[str, int], where: Path) -> None:
    """Path-independent quantities of a block: probe and zero-shot on the original embeddings."""
    if ctx.probe is not None:
        with ctx.timer("probe_eval"):
            features = probe.probe_features(block.x, ctx.sae.mean, ctx.sae.scale)
            block.probe_log_p = ctx.probe.log_probs(features)
            if block.labels is not None:
                original["lp_acc_orig"].update(probe.label_hits(ctx.probe, features, block.labels))
    if ctx.class_embeddings is None and ctx.captions is None:
        return
    with ctx.timer("retention"):
        if ctx.class_embeddings is not None:
            unknown = sorted(set(block.labels) - set(class_lookup))
            if unknown:
                raise MsaeError(f"{where}: label(s) {', '.join(unknown[:10])} have no row in --class-embeddings")
            block.class_index = torch.tensor([class_lookup[v] for v in block.labels], device=block.x.device)
        _update_retention(ctx, block, block.x, original, "orig")


def _update_retention(ctx: _Context, block: _Block, images: torch.Tensor, moments: dict[str, RunningMoments], suffix: str) -> None:
    """Zero-shot hits and recall@1/@5 of `images` (the block's originals or reconstructions)."""
    if ctx.class_embeddings is not None:
        pred = retention.zero_shot_predict(images, ctx.class_embeddings)
        moments[f"zeroshot_acc_{suffix}"].update((pred == block.class_index).double())
    if ctx.captions is not None:
        paired = torch.arange(block.first_row, block.first_row + images.shape[0])
        for k, hits in retention.recall_hits(retention.retrieval_ranks(images, ctx.captions, paired)).items():
            moments[f"recall{k}_{suffix}"].update(hits)


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _assemble(sae: torch.nn.Module, n_rows: int, results: dict[str, dict[str, Any]], source: dict[str, str],
              original: dict[str, RunningMoments], do: float) -> dict[str, Any]:
    """metrics.json (internals.md): flat, stable keys; absent rather than null."""
    dense, sparse = results[source["dense"]], results[source["sparse"]]
    info = getattr(sae, "info", {}) or {}
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
    if info.get("final_dead_latents") is not None:
        out["ndn_train"] = int(info["final_dead_latents"])
    for key in ("lp_kl", "lp_kl_std", "lp_agree", "lp_agree_std", "lp_acc_recon", "zeroshot_acc_recon", "recall1_recon", "recall5_recon"):
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
    return _finite(out)


def write_outputs(result: Evaluation, out_dir: str | os.PathLike[str]) -> Path:
    """progressive.csv, then metrics.json (the 'done' file), each atomically."""
    out = Path(out_dir)
    write_text_atomic(out / PROGRESSIVE_FILE, result.progressive.to_csv(index=False))
    write_json_atomic(out / METRICS_FILE, result.metrics)
    return out
