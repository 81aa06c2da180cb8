"""EleutherAI sparsify on disk: `cfg.json` + `sae.safetensors` (encoder.weight [n, d],
encoder.bias [n], W_dec [n, d], b_dec [d]), loadable with `sparsify.SparseCoder.load_from_disk(dir)`.

sparsify computes the top-k of ReLU((x - b_dec) encoder.weight^T + encoder.bias) and decodes
z W_dec + b_dec on raw inputs, so msae's centring and scaling are folded into the weights
(msae.interop.fold). It has only a TopK activation: msae topk exports with its k, matryoshka with
its first nesting level (msae's sparse path), relu with k = n (the top-n of ReLU is ReLU);
batchtopk and jumprelu have no sparsify form (export them to SAELens). cfg.json keeps an `msae`
block (sparsify ignores unknown keys) so an import back restores the run exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msae import interop
from msae.errors import MsaeError

if TYPE_CHECKING:
    from typing import Unpack

FORMAT = "sparsify"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The sparsify k that computes msae's sparse path for this msae config."""
    variant = config["variant"]
    if variant == "topk":
        return {"k": int(config["k"])}
    if variant == "matryoshka":
        return {"k": int(config["nesting"][0])}
    if variant == "relu":
        return {"k": int(config["n_latents"])}
    raise MsaeError(f"variant {variant!r} has no sparsify form (sparsify has only TopK); use --format saelens")


def export_sparsify(sae_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
    """`msae export --format sparsify --sae DIR --out OUT`: the run as a sparsify SparseCoder mapping
    RAW embeddings to the same latents and reconstruction. float64 makes a round trip bit-exact."""
    parts, config = interop.read_run(sae_dir)
    k = architecture(parts.config)["k"]
    folded = interop.fold(parts, dtype)
    d, n = parts.config["d"], parts.config["n_latents"]
    tensors = {
        "encoder.weight": folded.W_enc.T,
        "encoder.bias": folded.b_enc,
        "W_dec": folded.W_dec,
        "b_dec": folded.b_dec,
    }
    # normalize_decoder False: the folded decoder rows have norm 1/scale, and sparsify would rescale
    # them to 1 if it trained this SAE further.
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, n // d),
        "normalize_decoder": False,
        "num_latents": n,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d,
        interop.METADATA_KEY: interop.export_metadata(parts, config),
    }
    return interop.write_export(out, CFG_FILE, cfg, WEIGHTS_FILE, tensors)


def read_sparsify(directory: str | os.PathLike[str]) -> tuple[interop.Parts, dict[str, Any], dict[str, Any]]:
    """Parts of a sparsify SAE directory, the run keys its msae metadata carried, and the details
    worth recording."""
    directory = Path(directory)
    cfg_path, weights_path = directory / CFG_FILE, directory / WEIGHTS_FILE
    cfg = interop.read_json(cfg_path)
    for key, allowed in (("activation", "topk"), ("skip_connection", False), ("transcode", False)):
        if cfg.get(key, allowed) != allowed:
            raise MsaeError(f"{cfg_path}: {key}={cfg[key]!r} has no msae equivalent (msae reads {key}={allowed!r})")
    d, k = interop.positive_int(cfg, "d_in", cfg_path), interop.positive_int(cfg, "k", cfg_path)
    if cfg.get("num_latents"):
        n = interop.positive_int(cfg, "num_latents", cfg_path)
    else:
        n = d * interop.positive_int(cfg, "expansion_factor", cfg_path)
    if k > n:
        raise MsaeError(f"{cfg_path}: k={k} exceeds the {n} latents")
    wanted = {"encoder.weight": (n, d), "encoder.bias": (n,), "W_dec": (n, d), "b_dec": (d,)}
    tensors = interop.read_tensors(weights_path, wanted)
    folded = interop.Folded(
        W_enc=tensors["encoder.weight"].T, b_enc=tensors["encoder.bias"], W_dec=tensors["W_dec"], b_dec=tensors["b_dec"]
    )
    meta = interop.matching_metadata(cfg.get(interop.METADATA_KEY), d, n, {"k": k}, architecture)
    parts, carried = interop.restore(
        folded, meta, {"variant": "topk", "d": d, "n_latents": n, "k": k}, None, str(cfg_path)
    )
    return parts, carried, {"k": k, "msae_metadata": meta is not None}


def import_sparsify(
    path: str | os.PathLike[str], out: str | os.PathLike[str], **backbone: Unpack[interop.Backbone]
) -> Path:
    """`msae import sparsify PATH --out DIR`: a sparsify SAE directory (one hookpoint, or an hf://
    spec) as an msae run; an msae export comes back as the run it was, others as TopK SAEs."""
    return interop.import_directory(FORMAT, path, out, read_sparsify, WEIGHTS_FILE, **backbone)
