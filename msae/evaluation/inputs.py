"""Inputs of `msae evaluate`: the checks on the stores, the linear probe, class prompts and
captions, and the evaluation set read in blocks of consecutive rows."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from msae import store
from msae.config.evaluate import EvalOptions
from msae.errors import MsaeError
from msae.evaluation.accumulate import Block, Context, update_retention
from msae.metrics import linear_probe
from msae.metrics.aggregate import RunningMoments
from msae.sae.model import SparseAutoencoder


def check_inputs(
    sae: SparseAutoencoder, embeddings: Path, modality: str | None = None
) -> tuple[dict[str, Any], int, list[str]]:
    """The evaluation store's metadata, row count and columns, after checking it fits the SAE and
    holds `modality` (default: the modality the SAE was trained on; either, for one trained on both)."""
    meta = store.read_meta(embeddings)
    if modality is None and sae.record is not None and sae.record.data is not None:
        modality = sae.record.data.modality
    if modality == "both":
        modality = None  # an SAE trained on both modalities reads either
    sae.require_compatible(meta, str(embeddings), modality=modality)
    n_rows = store.count_rows(embeddings)
    if n_rows == 0:
        raise MsaeError(f"{embeddings}: the evaluation set is empty (0 rows)")
    columns = pq.read_schema(embeddings).names
    return meta, n_rows, columns


def train_probe(ctx: Context, path: Path, device: torch.device) -> None:
    opts = ctx.options
    data = store.read_embeddings(path, columns=["label"], expect_dim=ctx.sae.config.d)
    x = torch.tensor(data.embeddings, device=device)
    with torch.no_grad():
        features = linear_probe.probe_features(x, ctx.sae.mean, ctx.sae.scale)
    try:
        ctx.probe = linear_probe.train_probe(
            features,
            data.columns["label"].astype(str).tolist(),
            seed=opts.seed,
            holdout=opts.probe_holdout,
            lr=opts.probe_lr,
            batch_size=opts.probe_batch_size,
            max_epochs=opts.probe_max_epochs,
            patience=opts.probe_patience,
        )
    except ValueError as exc:
        raise MsaeError(f"{path}: cannot train the linear probe: {exc}") from exc


def load_classes(
    ctx: Context, path: Path, eval_meta: dict[str, Any], eval_path: Path, device: torch.device
) -> list[str]:
    classes = store.read_embeddings(path, columns=["label"], expect_dim=ctx.sae.config.d)
    store.require_same_backbone(classes.meta, str(path), eval_meta, f"{eval_path} was embedded with")
    names = classes.columns["label"].astype(str).tolist()
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MsaeError(f"{path}: one row per class expected; repeated labels: {', '.join(duplicated[:10])}")
    ctx.class_embeddings = torch.tensor(classes.embeddings, device=device)
    return names


def pair_captions(ctx: Context, path: Path, eval_meta: dict[str, Any], eval_path: Path, device: torch.device) -> None:
    captions = store.read_embeddings(path, columns=[], expect_dim=ctx.sae.config.d)
    store.require_same_backbone(captions.meta, str(path), eval_meta, f"{eval_path} was embedded with")
    if captions.meta.get("modality") != "text":
        raise MsaeError(
            f"{path}: --text-embeddings must be a text store, got modality {captions.meta.get('modality')!r}"
        )
    if eval_meta.get("modality") != "image":
        raise MsaeError(
            f"{eval_path}: image->text retrieval needs an image store, got modality {eval_meta.get('modality')!r}"
        )
    position = pd.Series(np.arange(len(captions.ids)), index=captions.ids)
    eval_ids = pq.read_table(eval_path, columns=["id"]).column("id").to_pylist()
    missing = [i for i in eval_ids if i not in position.index]
    if missing:
        raise MsaeError(
            f"{path}: no caption for {len(missing)} evaluation id(s) of {eval_path}, e.g. {', '.join(missing[:10])}"
        )
    rows = position.loc[eval_ids].to_numpy()
    ctx.captions = torch.tensor(captions.embeddings[rows], device=device)


def blocks(
    path: Path, options: EvalOptions, columns: list[str], n_rows: int, progress: bool = True
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Blocks of `cknna_batch` consecutive rows (the last one partial), read in record batches."""
    pending_x: list[np.ndarray] = []
    pending_cols: list[pd.DataFrame] = []
    have = 0
    bar = tqdm(total=n_rows, unit="rows", desc="evaluate", disable=not progress, file=sys.stderr)
    for part in store.iter_embeddings(path, batch_rows=options.batch_size, columns=columns):
        pending_x.append(part.embeddings)
        pending_cols.append(part.columns)
        have += len(part)
        while have >= options.cknna_batch:
            x, cols = np.concatenate(pending_x), pd.concat(pending_cols, ignore_index=True)
            yield x[: options.cknna_batch], cols.iloc[: options.cknna_batch].reset_index(drop=True)
            bar.update(options.cknna_batch)
            pending_x, pending_cols = (
                [x[options.cknna_batch :]],
                [cols.iloc[options.cknna_batch :].reset_index(drop=True)],
            )
            have -= options.cknna_batch
    if have:
        yield np.concatenate(pending_x), pd.concat(pending_cols, ignore_index=True)
        bar.update(have)
    bar.close()


def block_originals(
    ctx: Context, block: Block, original: dict[str, RunningMoments], class_lookup: dict[str, int], where: Path
) -> None:
    """Path-independent quantities of a block: probe and zero-shot on the original embeddings."""
    if ctx.probe is not None:
        with ctx.timer("probe_eval"):
            features = linear_probe.probe_features(block.x, ctx.sae.mean, ctx.sae.scale)
            block.probe_log_p = ctx.probe.log_probs(features)
            if block.labels is not None:
                original["lp_acc_orig"].update(linear_probe.label_hits(ctx.probe, features, block.labels))
    if ctx.class_embeddings is None and ctx.captions is None:
        return
    with ctx.timer("retention"):
        if ctx.class_embeddings is not None:
            assert block.labels is not None  # zero-shot evaluation reads the label column
            unknown = sorted(set(block.labels) - set(class_lookup))
            if unknown:
                raise MsaeError(f"{where}: label(s) {', '.join(unknown[:10])} have no row in --class-embeddings")
            block.class_index = torch.tensor([class_lookup[v] for v in block.labels], device=block.x.device)
        update_retention(ctx, block, block.x, original, "orig")
