"""SAEs that move between msae and other code: the official MSAE checkpoints, SAELens, sparsify and
the Hugging Face Hub.

Every converter passes through `Parts`, one SAE as plain tensors in msae's parametrisation

    x~ = (x - mean) * scale,  a = (x~ - b_pre) W_enc + b_enc,  x_hat = (z W_dec + b_pre) / scale + mean,

so each format module only maps its own file layout onto `Parts`. The formats without input
preprocessing (SAELens, sparsify) see the same SAE through `fold`: the centring and scaling moved
into the weights, a = (x - b_dec) W_enc' + b_enc and x_hat = z W_dec' + b_dec, which maps RAW
embeddings to the same latents and reconstruction.

`to_module` / `from_module` are the only code that touches msae.sae internals (the module's
constructor and tensor names); everything else reads and writes run directories through them.
Format modules: `msae.interop.official`, `.saelens`, `.sparsify`; the Hub: `.hub`; model cards:
`.card`. This package imports no format module, so each stays importable on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from msae.errors import MsaeError
from msae.io import atomic_path, file_sha256, read_json_object, staged_dir, write_json_atomic

if TYPE_CHECKING:
    from typing import Unpack

    import torch

    from msae.sae import SparseAutoencoder

CONFIG_FILE = "config.json"
METADATA_KEY = "msae"  # where an export keeps what the target format cannot hold (for an exact import back)
EXPORT_DTYPES = ("float32", "float64")  # float64 makes the round trip bit-exact


@dataclass
class Parts:
    """One SAE as float32 CPU tensors in msae's parametrisation (see the module docstring).

    `config` holds the architecture keys of config.json (variant, d, n_latents, k, nesting, ...);
    `threshold` is the scalar inference threshold of batchtopk or the per-latent one of jumprelu."""

    config: dict[str, Any]
    W_enc: torch.Tensor  # [d, n], a latent is a column
    b_enc: torch.Tensor  # [n]
    W_dec: torch.Tensor  # [n, d], a latent is a row
    b_pre: torch.Tensor  # [d]
    mean: torch.Tensor  # [d]
    scale: float
    threshold: torch.Tensor | None = None


@dataclass
class Folded:
    """The same SAE with preprocessing folded into the weights: a = (x - b_dec) W_enc + b_enc,
    x_hat = z W_dec + b_dec, on RAW embeddings."""

    W_enc: torch.Tensor  # [d, n]
    b_enc: torch.Tensor  # [n]
    W_dec: torch.Tensor  # [n, d]
    b_dec: torch.Tensor  # [d]


# --------------------------------------------------------------------- the adapter to msae.sae
def to_module(parts: Parts, source: str) -> SparseAutoencoder:
    """The msae module holding `parts` (eval mode, frozen); a MsaeError names `source` when the
    architecture or a tensor shape is impossible."""
    import torch

    from msae.sae import SAEConfig, SparseAutoencoder

    try:
        module = SparseAutoencoder(SAEConfig.from_dict(parts.config, source))
    except MsaeError as exc:
        raise MsaeError(f"{source}: no msae architecture matches ({exc})") from exc
    state = module.state_dict()
    given = {
        "W_enc": parts.W_enc,
        "b_enc": parts.b_enc,
        "W_dec": parts.W_dec,
        "b_pre": parts.b_pre,
        "mean": parts.mean,
        "scale": torch.tensor(float(parts.scale)),
    }
    if parts.threshold is not None:
        given["threshold"] = parts.threshold.reshape(state["threshold"].shape)
    for name, tensor in given.items():
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise MsaeError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, expected {tuple(state[name].shape)} "
                f"for d={parts.config['d']}, n={parts.config['n_latents']}"
            )
        state[name] = tensor.detach().to("cpu", torch.float32)
    module.load_state_dict(state)
    return module.requires_grad_(False).eval()


def from_module(module: SparseAutoencoder) -> Parts:
    """The tensors and architecture of a loaded msae module."""
    import torch

    state = {name: t.detach().to("cpu", torch.float32) for name, t in module.state_dict().items()}
    return Parts(
        config=module.config.to_dict(),
        W_enc=state["W_enc"],
        b_enc=state["b_enc"],
        W_dec=state["W_dec"],
        b_pre=state["b_pre"],
        mean=state["mean"],
        scale=float(state["scale"]),
        threshold=state.get("threshold"),
    )


# --------------------------------------------------------------------- run directories
def read_run(directory: str | os.PathLike[str]) -> tuple[Parts, dict[str, Any]]:
    """An msae run directory as Parts plus its whole config.json (run-level keys included)."""
    from msae.sae import load

    module = load(directory)
    config = json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8"))
    return from_module(module), config


def write_run(parts: Parts, out: str | os.PathLike[str], source: str, info: dict[str, Any]) -> Path:
    """Write `parts` as an msae run directory (model.safetensors, then config.json) with the
    run-level keys `info` (e.g. `source`, `data`) beside the architecture; an older run in `out`
    is replaced only once both files are written (msae.io.staged_dir)."""
    from msae.sae import save

    module = to_module(parts, source)
    with staged_dir(out, CONFIG_FILE) as stage:
        save(module, stage, info)
    return Path(out)


def import_info(
    fmt: str,
    path: str,
    weights: Path,
    details: dict[str, Any],
    *,
    model: str | None = None,
    pretrained: str | None = None,
    carried: dict[str, Any] | None = None,
    dataset: str | None = None,
    modality: str | None = None,
) -> dict[str, Any]:
    """The run-level keys of an imported SAE: `source` (format, path, content hash of the weights,
    format details, and the `origin` an msae export carried), the `data` and `training` an msae
    export carried, and, when the backbone is named, a `data` block naming it so later stages can
    check that embeddings come from the same CLIP."""
    carried = dict(carried or {})
    source = {"format": fmt, "path": path, "sha256": file_sha256(weights), **details}
    if "source" in carried:
        source["origin"] = carried.pop("source")
    info: dict[str, Any] = {**carried, "source": source}
    if (model is None) != (pretrained is None):
        raise MsaeError("--model and --pretrained name the backbone together: give both or neither")
    if model is not None:
        known = dict(info.get("data") or {})
        # the training store itself is not known for a foreign SAE: path and hash stay empty
        info["data"] = {
            "path": known.get("path"),
            "sha256": known.get("sha256"),
            **known,
            "model": model,
            "pretrained": pretrained,
            "modality": modality or known.get("modality"),
            "dataset": dataset or known.get("dataset"),
        }
    return info


class Backbone(TypedDict, total=False):
    """The options of an import that name the CLIP the SAE was trained on (see `import_info`)."""

    model: str | None
    pretrained: str | None
    modality: str | None


def import_directory(
    fmt: str,
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    read: Callable[[Path], tuple[Parts, dict[str, Any], dict[str, Any]]],
    weights_file: str,
    **backbone: Unpack[Backbone],
) -> Path:
    """`msae import FORMAT PATH --out DIR` for a directory format (SAELens, sparsify): PATH (a folder
    or an hf:// spec) read by the format's `read` (Parts, carried run keys, details) and written as
    an msae run whose source hash is that of `weights_file`."""
    from msae.interop.hub import resolve

    local = resolve(path)
    parts, carried, details = read(local)
    info = import_info(fmt, os.fspath(path), local / weights_file, details, carried=carried, **backbone)
    return write_run(parts, out, str(path), info)


def write_export(
    out: str | os.PathLike[str], cfg_file: str, cfg: dict[str, Any], weights_file: str, tensors: dict[str, torch.Tensor]
) -> Path:
    """Write an export directory of a foreign format: the safetensors `weights_file`, then the JSON
    `cfg_file`; an older export in `out` is replaced only once both are written."""
    from safetensors.torch import save_file

    out = Path(out)
    with staged_dir(out, cfg_file) as stage:
        with atomic_path(stage / weights_file) as tmp:
            save_file({name: t.contiguous() for name, t in tensors.items()}, str(tmp))
        write_json_atomic(stage / cfg_file, cfg)
    return out


# --------------------------------------------------------------------- folding the preprocessing
def fold(parts: Parts, dtype: str = "float32") -> Folded:
    """Move mean and scale into the weights (computed in float64, stored as `dtype`):
    W_enc' = s W_enc, W_dec' = W_dec / s, b_dec = mean + b_pre / s; b_enc unchanged."""
    out = _dtype(dtype)
    s = float(parts.scale)
    W_enc, W_dec, b_pre, mean = (t.double() for t in (parts.W_enc, parts.W_dec, parts.b_pre, parts.mean))
    return Folded(
        W_enc=(W_enc * s).to(out),
        b_enc=parts.b_enc.to(out),
        W_dec=(W_dec / s).to(out),
        b_dec=(mean + b_pre / s).to(out),
    )


def unfold(
    folded: Folded, config: dict[str, Any], mean: torch.Tensor, scale: float, threshold: torch.Tensor | None
) -> Parts:
    """The inverse of `fold` for a known mean and scale (an msae export read back)."""
    s = float(scale)
    m = mean.double()
    return Parts(
        config=config,
        W_enc=(folded.W_enc.double() / s).float(),
        b_enc=folded.b_enc.float(),
        W_dec=(folded.W_dec.double() * s).float(),
        b_pre=((folded.b_dec.double() - m) * s).float(),
        mean=mean.float(),
        scale=s,
        threshold=threshold,
    )


def plain(folded: Folded, config: dict[str, Any], threshold: torch.Tensor | None) -> Parts:
    """A foreign SAE without preprocessing as Parts: mean 0, scale 1, b_pre = b_dec."""
    import torch

    d = folded.W_enc.shape[0]
    return Parts(
        config=config,
        W_enc=folded.W_enc.float(),
        b_enc=folded.b_enc.float(),
        W_dec=folded.W_dec.float(),
        b_pre=folded.b_dec.float(),
        mean=torch.zeros(d),
        scale=1.0,
        threshold=threshold,
    )


def export_metadata(parts: Parts, config: dict[str, Any]) -> dict[str, Any]:
    """What an export keeps beside the folded weights so `restore` can rebuild the msae run:
    the architecture, the preprocessing and the run's provenance."""
    run = {k: config[k] for k in ("data", "training", "source") if k in config}
    return {"config": dict(parts.config), "mean": parts.mean.tolist(), "scale": float(parts.scale), "run": run}


def matching_metadata(
    meta: Any, d: int, n: int, declared: dict[str, Any], target: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """`meta` when it is an msae export block that still describes the file: same sizes, and the
    recorded msae architecture maps (through the format's `target`) to the architecture the file
    declares. None otherwise, e.g. after the SAE was changed or retrained by the other library."""
    config = meta.get("config") if isinstance(meta, dict) and "mean" in meta and "scale" in meta else None
    if not isinstance(config, dict) or (config.get("d"), config.get("n_latents")) != (d, n):
        return None
    try:
        return meta if target(config) == declared else None
    except (MsaeError, KeyError, TypeError, IndexError):
        return None


def restore(
    folded: Folded, meta: dict[str, Any] | None, fallback: dict[str, Any], threshold: torch.Tensor | None, where: str
) -> tuple[Parts, dict[str, Any]]:
    """Parts of an imported SAE and its run-level keys. `meta` is the msae metadata when the
    format module found that it still describes the file; then the original variant,
    preprocessing and provenance come back. Otherwise (or when a batchtopk threshold is no
    longer one value) the SAE is the plain variant `fallback` that the file itself describes."""
    import torch

    if meta is not None and meta["config"].get("variant") == "batchtopk":
        if threshold is None or not bool((threshold == threshold.reshape(-1)[0]).all()):
            meta = None
        else:
            threshold = threshold.reshape(-1)[0].clone()
    if meta is None:
        return plain(folded, fallback, threshold), {}
    mean = torch.tensor(meta["mean"], dtype=torch.float32)
    if tuple(mean.shape) != (fallback["d"],):
        raise MsaeError(
            f"{where}: the msae metadata has a mean of shape {tuple(mean.shape)}, expected ({fallback['d']},)"
        )
    return unfold(folded, dict(meta["config"]), mean, float(meta["scale"]), threshold), dict(meta.get("run") or {})


def _dtype(name: str) -> torch.dtype:
    import torch

    if name not in EXPORT_DTYPES:
        raise MsaeError(f"--dtype {name!r}: choose from {', '.join(EXPORT_DTYPES)}")
    return getattr(torch, name)


# --------------------------------------------------------------------- file checks shared by the formats
def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of an SAE directory of some format (MsaeError naming the file)."""
    return read_json_object(path, "not an SAE directory of this format")


def positive_int(cfg: dict[str, Any], key: str, where: Path) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MsaeError(f"{where}: {key} should be a positive integer, found {value!r}")
    return value


def read_tensors(
    path: Path, wanted: dict[str, tuple[int, ...]], optional: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """The float64 tensors of a safetensors file (no pickle): exactly the names and shapes in
    `wanted`, plus any of `optional`; a MsaeError names the file and the first difference."""
    import torch
    from safetensors.torch import load_file

    try:
        tensors = {k: v.to(torch.float64) for k, v in load_file(str(path)).items()}
    except Exception as exc:
        raise MsaeError(f"{path}: cannot read the weights ({exc})") from exc
    missing = [k for k in wanted if k not in tensors]
    unknown = sorted(set(tensors) - set(wanted) - set(optional))
    if missing or unknown:
        raise MsaeError(
            f"{path}: tensors differ from the declared architecture (missing {missing or 'none'}, "
            f"unexpected {unknown or 'none'})"
        )
    for key, shape in wanted.items():
        if tuple(tensors[key].shape) != shape:
            raise MsaeError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected {shape}")
        if not bool(torch.isfinite(tensors[key]).all()):
            raise MsaeError(f"{path}: non-finite values in {key}")
    return tensors
