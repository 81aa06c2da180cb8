"""SAELens (v6 layout) on disk: `cfg.json` + `sae_weights.safetensors`, loadable with
`sae_lens.SAE.load_from_disk(dir)`.

SAELens computes a = (x - b_dec) W_enc + b_enc and x_hat = z W_dec + b_dec on raw inputs
(apply_b_dec_to_input, normalize_activations "none"), so msae's centring and scaling are folded
into the weights (msae.interop.fold). Architectures:

    msae relu                  -> "standard"  (ReLU)
    msae topk                  -> "topk", k
    msae matryoshka            -> "topk", k = the first nesting level (msae's sparse path)
    msae batchtopk / jumprelu  -> "jumprelu", per-latent threshold (BatchTopK: its one threshold
                                  repeated, as SAELens itself saves a trained BatchTopK SAE)

cfg.json's metadata keeps an `msae` block (architecture, mean, scale, provenance) so an import
back restores the run exactly; any other SAELens SAE imports as the plain variant it declares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msae import interop
from msae.errors import MsaeError

if TYPE_CHECKING:
    from typing import Unpack

FORMAT = "saelens"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FORMAT_VERSION = "6.0.0"  # the SAELens on-disk layout written (metadata.sae_lens_version)
ARCHITECTURES = ("standard", "topk", "jumprelu")
SCALING_KEYS = ("scaling_factor", "finetuning_scaling_factor")  # older SAELens files; must be all ones


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The SAELens architecture fields that compute msae's sparse path for this msae config."""
    variant = config["variant"]
    if variant == "relu":
        return {"architecture": "standard"}
    if variant == "topk":
        return {"architecture": "topk", "k": int(config["k"])}
    if variant == "matryoshka":
        return {"architecture": "topk", "k": int(config["nesting"][0])}
    if variant in ("batchtopk", "jumprelu"):
        return {"architecture": "jumprelu"}
    raise MsaeError(f"variant {variant!r} has no SAELens architecture")


def export_saelens(sae_dir: str | os.PathLike[str], out: str | os.PathLike[str], *, dtype: str = "float32") -> Path:
    """`msae export --format saelens --sae DIR --out OUT`: the run as a SAELens SAE mapping RAW
    embeddings to the same latents and reconstruction. float64 makes a round trip bit-exact."""
    parts, config = interop.read_run(sae_dir)
    folded = interop.fold(parts, dtype)
    arch = architecture(parts.config)
    tensors = {"W_enc": folded.W_enc, "b_enc": folded.b_enc, "W_dec": folded.W_dec, "b_dec": folded.b_dec}
    if arch["architecture"] == "jumprelu":  # batchtopk's scalar threshold becomes one per latent
        if parts.threshold is None:
            raise MsaeError(f"{sae_dir}: a {parts.config['variant']} SAE without its threshold tensor")
        tensors["threshold"] = parts.threshold.to(folded.W_enc.dtype).expand(parts.config["n_latents"]).clone()
    if arch["architecture"] == "topk":
        arch["rescale_acts_by_decoder_norm"] = False
    data = config.get("data") or {}
    metadata = {"sae_lens_version": FORMAT_VERSION, interop.METADATA_KEY: interop.export_metadata(parts, config)}
    if data.get("model"):
        metadata["model_name"] = data["model"]
    cfg = {
        "d_in": parts.config["d"],
        "d_sae": parts.config["n_latents"],
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **arch,
        "metadata": metadata,
    }
    return interop.write_export(out, CFG_FILE, cfg, WEIGHTS_FILE, tensors)


def read_saelens(directory: str | os.PathLike[str]) -> tuple[interop.Parts, dict[str, Any], dict[str, Any]]:
    """Parts of a SAELens SAE directory, the run keys its msae metadata carried, and the details
    worth recording. Older (pre-6) configs are read as SAELens itself reads them."""
    directory = Path(directory)
    cfg_path, weights_path = directory / CFG_FILE, directory / WEIGHTS_FILE
    cfg = interop.read_json(cfg_path)
    arch = _file_architecture(cfg, cfg_path)
    d, n = interop.positive_int(cfg, "d_in", cfg_path), interop.positive_int(cfg, "d_sae", cfg_path)
    norm = cfg.get("normalize_activations", "none")
    if norm not in (None, False, "none"):
        raise MsaeError(
            f"{cfg_path}: normalize_activations {norm!r} needs statistics the file does not hold; "
            "fold them into the weights in SAELens first"
        )
    wanted = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    if arch["architecture"] == "jumprelu":
        wanted["threshold"] = (n,)
    tensors = interop.read_tensors(weights_path, wanted, optional=SCALING_KEYS)
    for key in SCALING_KEYS:
        if key in tensors and not bool((tensors.pop(key) == 1).all()):
            raise MsaeError(f"{weights_path}: {key} differs from 1; fold it into W_dec in SAELens first")
    W_enc, b_enc, W_dec, b_dec = (tensors[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    if not cfg.get("apply_b_dec_to_input", True):  # a = x W_enc + b_enc: move b_dec's share into b_enc
        b_enc = b_enc + b_dec @ W_enc
    if arch["architecture"] == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
        norms = W_dec.norm(dim=1)  # SAELens's own fold: unit decoder rows, the norm moved into the encoder
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    folded = interop.Folded(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec)
    threshold = tensors.get("threshold")
    fallback = _plain_config(arch, d, n, cfg)
    metadata = cfg.get("metadata")
    meta = interop.matching_metadata(
        metadata.get(interop.METADATA_KEY) if isinstance(metadata, dict) else None, d, n, arch, architecture
    )
    threshold = threshold.float() if threshold is not None else None
    parts, carried = interop.restore(folded, meta, fallback, threshold, str(cfg_path))
    return parts, carried, {"architecture": arch["architecture"], "msae_metadata": meta is not None}


def import_saelens(
    path: str | os.PathLike[str], out: str | os.PathLike[str], **backbone: Unpack[interop.Backbone]
) -> Path:
    """`msae import saelens PATH --out DIR`: a SAELens SAE directory (or hf:// spec) as an msae
    run; an msae export comes back as the run it was, other SAEs as the plain variant they declare."""
    return interop.import_directory(FORMAT, path, out, read_saelens, WEIGHTS_FILE, **backbone)


def _file_architecture(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    """The architecture a cfg.json declares; pre-6 configs name it through activation_fn(_str)."""
    arch = cfg.get("architecture")
    if arch is None:
        activation = cfg.get("activation_fn") or cfg.get("activation_fn_str") or "relu"
        kwargs = cfg.get("activation_fn_kwargs") or {}
        if activation == "topk" and kwargs.get("k") is not None:
            return {"architecture": "topk", "k": int(kwargs["k"])}
        if activation == "relu":
            return {"architecture": "standard"}
        raise MsaeError(f"{where}: activation_fn {activation!r} has no msae equivalent")
    if arch not in ARCHITECTURES:
        raise MsaeError(
            f"{where}: architecture {arch!r} has no msae equivalent (msae reads {', '.join(ARCHITECTURES)})"
        )
    if arch == "topk":
        if not isinstance(cfg.get("k"), int):
            raise MsaeError(f"{where}: a topk SAE needs an integer k, found {cfg.get('k')!r}")
        return {"architecture": "topk", "k": cfg["k"]}
    return {"architecture": arch}


def _plain_config(arch: dict[str, Any], d: int, n: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The msae architecture of a foreign SAELens SAE (training-only parameters when the file has them)."""
    base: dict[str, Any] = {"d": d, "n_latents": n}
    if arch["architecture"] == "topk":
        return {**base, "variant": "topk", "k": arch["k"]}
    if arch["architecture"] == "jumprelu":
        return {**base, "variant": "jumprelu"}
    l1 = cfg.get("l1_coefficient")
    return {**base, "variant": "relu", **({"l1": float(l1)} if isinstance(l1, (int, float)) else {})}
