"""Tiny, complete inputs for the bad-input matrix (tests/test_hostile_*.py): an SAE run, image,
caption and vocabulary stores, images on disk, a concepts table and an evaluation, all on d = 16,
so that every command runs in well under a second on good input. Each case then breaks one input
and checks the command's answer (`run_case`)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import traceback
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from msae.cli import main
from msae.sae import SparseAutoencoder, make_config, save
from msae.store import write_embeddings

D, N_ITEMS = 16, 48
BACKBONE = {"model": "toy", "pretrained": "x"}
COLOURS = ("red", "green", "blue", "yellow")
TERMS = ("red", "green", "blue", "yellow", "circle", "square", "star", "cross")


def meta(modality: str, split: str = "test", dataset: str = "toy") -> dict:
    return {**BACKBONE, "modality": modality, "dataset": dataset, "split": split}


def tree_digest(root: Path, skip: Sequence[Path] = ()) -> dict[str, str]:
    """relative path -> sha256 of every file under `root` (files under `skip` left out): a
    snapshot to compare before and after a command."""
    skipped = [s.resolve() for s in skip]
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class Answer:
    code: int
    stderr: str
    stdout: str


def run_cli(args: Sequence[str]) -> Answer:
    """`msae ARGS` in this process, with its exit code and what it printed."""
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusals
            code = int(exc.code or 0)
        except Exception:  # a traceback: what `python -m msae` would exit 1 with
            traceback.print_exc(file=err)
            code = 1
    return Answer(code, err.getvalue(), out.getvalue())


def write_sae(path: Path, variant: str = "topk", n_scale: int = 4, seed: int = 0, **options) -> Path:
    """A small random SAE run (d = 16) recorded as trained on the toy backbone's images."""
    if variant == "topk":
        options.setdefault("k", 4)
    torch.manual_seed(seed)
    model = SparseAutoencoder(make_config(variant, D, n_scale, **options))
    n = model.config.n_latents
    with torch.no_grad():
        model.W_enc.normal_(0, 0.3)
        model.b_enc.normal_(0, 0.05)
        model.W_dec.copy_(torch.nn.functional.normalize(model.W_enc.T.clone() + 0.05 * torch.randn(n, D), dim=1))
    model.set_statistics(torch.zeros(D), 1.0)
    info = {"final_dead_latents": 0, "data": {**BACKBONE, "modality": "image", "path": None, "sha256": None}}
    return save(model, path, info)


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        name = f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / name)
        names.append(str((folder / name).resolve()))
    return names


def build(root: Path) -> dict[str, Path]:
    """Every good input, under `root`: returns name -> path."""
    rng = np.random.default_rng(1)
    colours = [COLOURS[i % 4] for i in range(N_ITEMS)]
    shapes = [TERMS[4 + (i // 4) % 4] for i in range(N_ITEMS)]
    x = rng.normal(size=(N_ITEMS, D)).astype(np.float32) + 0.5
    ids = [f"item{i:03d}" for i in range(N_ITEMS)]
    paths = _images(root / "pictures", N_ITEMS)
    captions = [f"a {c} {s}" for c, s in zip(colours, shapes)]
    files = {"root": root, "sae": write_sae(root / "sae")}
    columns = {
        "path": paths,
        "text": captions,
        "label": shapes,
        "attr_color": colours,
        "attr_shape": shapes,
        "attr_big": ["yes" if i % 3 == 0 else "no" for i in range(N_ITEMS)],
    }
    files["images"] = write_embeddings(root / "images.parquet", ids, x, meta("image"), columns)
    files["captions"] = write_embeddings(root / "captions.parquet", ids, x + 0.1, meta("text"), {"text": captions})
    vocab = rng.normal(size=(len(TERMS), D)).astype(np.float32)
    files["vocab"] = write_embeddings(
        root / "vocab.parquet", list(TERMS), vocab, meta("text", "all", "vocab"), {"text": list(TERMS)}
    )
    files["prompts"] = write_embeddings(
        root / "prompts.parquet", list(TERMS[4:]), vocab[4:], meta("text", "all"), {"label": list(TERMS[4:])}
    )
    n = 64
    table = pd.DataFrame(
        {
            "latent": np.arange(n, dtype=np.int64),
            "name": [TERMS[j % len(TERMS)] for j in range(n)],
            "score": np.linspace(1, 0, n),
            "frequency": np.full(n, 0.1),
            "valid": [j < 8 for j in range(n)],
            "attribute": ["color" if j % 8 < 4 else "shape" for j in range(n)],
        }
    )
    files["latents"] = root / "latents.parquet"
    table.to_parquet(files["latents"])
    terms = root / "terms.txt"
    terms.write_text("\n".join(TERMS) + "\n", encoding="utf-8")
    files["terms"] = terms
    return files


def copy_sae(files: dict[str, Path], dest: Path) -> Path:
    shutil.copytree(files["sae"], dest)
    return dest


# ----------------------------------------------------------------------------- broken stores
def _replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _rewrite(good: Path, dest: Path, change) -> Path:
    table = pq.read_table(good)
    pq.write_table(change(table), dest)
    return dest


def _with_meta(raw: bytes):
    return lambda table: table.replace_schema_metadata({b"msae": raw})


def _row_embedding(row: int, value):
    def change(table: pa.Table) -> pa.Table:
        column = table.column("embedding").combine_chunks()
        rows = column.to_pylist()
        rows[row] = value if value is None else [value] * column.type.list_size
        return _replace_column(table, "embedding", pa.array(rows, type=column.type))

    return change


def _ids(change_ids):
    def change(table: pa.Table) -> pa.Table:
        ids = table.column("id").to_pylist()
        change_ids(ids)
        return _replace_column(table, "id", pa.array(ids, type=pa.string()))

    return change


def _set(items: list, index: int, value) -> None:
    items[index] = value


def _store_meta(good: Path, **changes) -> bytes:
    old = json.loads(pq.read_schema(good).metadata[b"msae"])
    return json.dumps({**old, **changes}).encode()


def _narrow(good: Path, dest: Path) -> Path:
    store = pq.read_table(good)
    x = np.asarray(store.column("embedding").combine_chunks().flatten()).reshape(store.num_rows, -1)[:, :8]
    return write_embeddings(dest, store.column("id").to_pylist(), x, json.loads(store.schema.metadata[b"msae"]))


# name -> (builder(good store, destination) -> path, regex the message must match beyond the file name)
BAD_STORES = {
    "missing": (lambda g, d: d, "not found"),
    "not-parquet": (lambda g, d: (d.write_bytes(b"PAR1 this is not parquet"), d)[1], "not a readable Parquet file"),
    "truncated": (
        lambda g, d: (d.write_bytes(g.read_bytes()[: g.stat().st_size // 2]), d)[1],
        "not a readable Parquet",
    ),
    "meta-not-json": (lambda g, d: _rewrite(g, d, _with_meta(b"{not json")), "metadata is not valid JSON"),
    "meta-not-object": (lambda g, d: _rewrite(g, d, _with_meta(b"[1, 2]")), "must be a JSON object, found list"),
    "meta-lacks-keys": (lambda g, d: _rewrite(g, d, _with_meta(b'{"model": "toy"}')), "metadata lacks pretrained"),
    "empty": (lambda g, d: _rewrite(g, d, lambda t: t.slice(0, 0)), r"empty \(0 rows\)|no rows|0 rows"),
    "nan-row": (lambda g, d: _rewrite(g, d, _row_embedding(3, float("nan"))), r"NaN or inf, ids: {id3}"),
    "null-embedding": (lambda g, d: _rewrite(g, d, _row_embedding(3, None)), r"no embedding \(null\), ids: {id3}"),
    "duplicate-ids": (lambda g, d: _rewrite(g, d, _ids(lambda ids: _set(ids, 5, ids[4]))), "duplicate ids.*: {id4}"),
    "null-id": (lambda g, d: _rewrite(g, d, _ids(lambda ids: _set(ids, 2, None))), r"have no id \(rows 2"),
    "wrong-dim": (_narrow, r"dim 8"),
    "other-backbone": (
        lambda g, d: _rewrite(g, d, _with_meta(_store_meta(g, model="ViT-B-32"))),
        "embedded with (ViT-B-32/x.*toy/x|toy/x.*ViT-B-32/x)",  # both named (a mix has no reference store)
    ),
}


def bad_store(name: str, good: Path, dest: Path) -> tuple[Path, str]:
    """A broken copy of the store `good` at `dest` and the message it must produce."""
    build_it, message = BAD_STORES[name]
    ids = pq.read_table(good, columns=["id"]).column("id").to_pylist()
    return build_it(good, dest), message.format(id3=re.escape(ids[3]), id4=re.escape(ids[4]))


# ----------------------------------------------------------------------------- broken SAE runs
def _tensors(change):
    def apply(run: Path) -> None:
        tensors = load_file(str(run / "model.safetensors"))
        change(tensors)
        save_file(tensors, str(run / "model.safetensors"))

    return apply


def _config(change):
    def apply(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        change(config)
        (run / "config.json").write_text(json.dumps(config))

    return apply


def _nan(tensors: dict) -> None:
    tensors["W_dec"][0, 0] = float("nan")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# name -> (change applied to a copy of the good run, regex the message must match), each naming the run
BAD_RUNS = {
    "nan-weight": (_tensors(_nan), r"model.safetensors: non-finite values \(NaN/inf\) in W_dec"),
    "truncated-tensors": (lambda r: _truncate(r / "model.safetensors"), "model.safetensors: cannot read the tensors"),
    "no-tensors": (lambda r: (r / "model.safetensors").unlink(), "model.safetensors is missing"),
    "no-config": (lambda r: (r / "config.json").unlink(), "not a finished SAE run"),
    "config-not-json": (lambda r: (r / "config.json").write_text("{variant: topk"), "config.json: not valid JSON"),
    "config-not-object": (lambda r: (r / "config.json").write_text("[1]"), "config.json: expected a JSON object"),
    "config-wrong-type": (_config(lambda c: c.update(k="four")), r"config.json: k: 'four'"),
    "config-missing-key": (_config(lambda c: c.pop("d")), r"config.json: d: missing"),
    "config-unknown-variant": (_config(lambda c: c.update(variant="magic")), r"config.json: variant: 'magic'"),
    "config-schema": (_config(lambda c: c.update(schema_version=99)), "config.json: schema_version 99"),
    "config-key-as-written": (_config(lambda c: c.update(n_latents="64")), r"config.json: n_latents: '64'"),
    "tensors-of-another-size": (_config(lambda c: c.update(n_latents=128)), "do not match config.json"),
    "config-training-not-object": (_config(lambda c: c.update(training="abc")), r"config.json: training"),
    "config-final-not-object": (_config(lambda c: c.update(final=5)), r"config.json: final"),
}


def bad_run(name: str, good: Path, dest: Path) -> tuple[Path, str]:
    """A broken copy of the SAE run `good` at `dest` and the message it must produce."""
    shutil.copytree(good, dest)
    change, message = BAD_RUNS[name]
    change(dest)
    return dest, message
