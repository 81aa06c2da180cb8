"""Checkpoints of the official MSAE code (github WolodjaZ/MSAE, MIT licence) as msae run directories.

The official train.py saves `torch.save({"model": state_dict, "mean_center": mu [d],
"scaling_factor": s, "target_norm": sqrt(d) as numpy float64})`, with state_dict keys `pre_bias`
[d], `encoder` [d, n], `latent_bias` [n], `decoder` [n, d] and the counter
`latents_activation_frequency` [n]. The architecture is not in the file but in its name:

    {n}_{d}_{activation}[_{RW|UW}]_{tied}_{normalize}_{soft cap}_{training data}.pth

where activation is TopKReLU_<k>, BatchTopKReLU_<k> or ReLU_<digits> (L1 weight 0.<digits>), and a
Matryoshka SAE carries its first level as k plus RW/UW; its nesting then follows train.py's rule
(k doubling while <= n, then n). The official model computes a = ((x - mu) s - pre_bias) encoder +
latent_bias and x_hat = (z decoder + pre_bias) / s + mu, which is msae's module with mean = mu,
scale = s, so the imported SAE gives the official latents and reconstructions on raw inputs.

The file is read with `torch.load(weights_only=True)`: no pickled code runs. The only globals
allowed beyond tensors are the three numpy names that rebuild the float64 `target_norm`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msae.errors import MsaeError
from msae.interop import Parts, import_info, write_run

FORMAT = "official-msae"
ACTIVATIONS = {"TopKReLU": "topk", "BatchTopKReLU": "batchtopk", "ReLU": "relu"}
UNSUPPORTED = {  # official activations msae has no equivalent for, and why
    "TopK": "keeps negative top-k values (no ReLU)",
    "TopKabs": "selects and keeps |a|",
    "TopKabsReLU": "selects on |a|",
    "BatchTopK": "keeps negative values (no ReLU)",
    "BatchTopKabs": "selects on |a|",
    "BatchTopKabsReLU": "selects on |a|",
    "JumpReLU": "its threshold is not saved under a name train.py writes",
}
STATE_KEYS = ("pre_bias", "encoder", "latent_bias", "decoder")
IGNORED_KEYS = ("latents_activation_frequency",)  # a training counter, not part of the model


@dataclass(frozen=True)
class OfficialName:
    """What an official checkpoint's file name says about its architecture."""

    n: int
    d: int
    activation: str  # TopKReLU, BatchTopKReLU or ReLU
    k: int | None  # TopK-type activations (Matryoshka: the first level)
    l1: float | None  # ReLU
    weighting: str | None  # "rw" / "uw" for Matryoshka, else None
    tied: bool
    normalize: bool
    soft_cap: float
    data: str  # base name of the training data file

    @property
    def config(self) -> dict[str, Any]:
        """The msae architecture (config.json keys) of this checkpoint."""
        base: dict[str, Any] = {"d": self.d, "n_latents": self.n, "loss": "nmse", "scale_mode": "paper"}
        if self.weighting is not None:
            assert self.k is not None  # parse_name gives every Matryoshka name its first level
            return {
                **base,
                "variant": "matryoshka",
                "nesting": official_nesting(self.k, self.n),
                "weighting": self.weighting,
                "inner": ACTIVATIONS[self.activation],
            }
        if self.activation == "ReLU":
            return {**base, "variant": "relu", "l1": self.l1}
        return {**base, "variant": ACTIVATIONS[self.activation], "k": self.k}


def official_nesting(start: int, n: int) -> list[int]:
    """train.py's nesting list for a first level `start`: doubling while <= n, then n."""
    levels = [start]
    while levels[-1] * 2 <= n:
        levels.append(levels[-1] * 2)
    return levels if levels[-1] == n else [*levels, n]


def parse_name(name: str) -> OfficialName:
    """Read the architecture from an official file name (see the module docstring)."""
    stem = name[: name.rfind(".pt")] if ".pt" in name else name
    tokens = stem.split("_")
    expected = (
        "expected {n}_{d}_{activation}[_{RW|UW}]_{tied}_{normalize}_{soft cap}_{data}.pth "
        "as the official train.py names it"
    )
    try:
        n, d, activation = int(tokens[0]), int(tokens[1]), tokens[2]
        i = 3
        if activation in UNSUPPORTED:
            raise MsaeError(f"{name}: activation {activation} has no msae equivalent ({UNSUPPORTED[activation]})")
        if activation not in ACTIVATIONS:
            raise MsaeError(f"{name}: unknown activation {activation!r}; {expected}")
        k = l1 = None
        if activation == "ReLU":
            digits, i = tokens[i], i + 1
            if not digits.isdigit():
                raise MsaeError(f"{name}: ReLU_{digits} should give the L1 weight as digits after '0.'; {expected}")
            l1 = float(f"0.{digits}")
        else:
            k, i = int(tokens[i]), i + 1
        weighting = None
        if tokens[i] in ("RW", "UW"):
            weighting, i = tokens[i].lower(), i + 1
        flags = tokens[i : i + 2]
        if any(f not in ("True", "False") for f in flags):
            raise MsaeError(f"{name}: tied/normalize flags {'_'.join(flags)!r} are not True/False; {expected}")
        tied, normalize = flags[0] == "True", flags[1] == "True"
        soft_cap, data = float(tokens[i + 2]), "_".join(tokens[i + 3 :])
    except (ValueError, IndexError) as exc:
        raise MsaeError(f"{name}: cannot read the architecture from the file name ({exc}); {expected}") from None
    if weighting is not None and activation == "ReLU":
        raise MsaeError(f"{name}: a Matryoshka ({weighting.upper()}) checkpoint needs a TopK-type activation")
    if k is not None and not 1 <= k <= n:
        raise MsaeError(f"{name}: k={k} must lie in 1..n={n}")
    return OfficialName(
        n=n,
        d=d,
        activation=activation,
        k=k,
        l1=l1,
        weighting=weighting,
        tied=tied,
        normalize=normalize,
        soft_cap=soft_cap,
        data=data,
    )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict, unpickled with weights_only=True (no code execution; a file that needs
    any other global is refused with a MsaeError naming it)."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MsaeError(
            f"{path}: not loadable as a weights-only checkpoint, refused without running its pickled "
            f"code ({type(exc).__name__}: {_reason(exc)})"
        ) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise MsaeError(f"{path}: expected the official dict with 'model', 'mean_center', 'scaling_factor'")
    return obj


def read_official(
    path: str | os.PathLike[str], threshold: float | None = None
) -> tuple[Parts, OfficialName, dict[str, Any]]:
    """Parts of an official checkpoint, its parsed name and the details worth recording.

    `threshold` is the inference threshold given to a BatchTopK SAE: the official code has none
    (its inference is batch-dependent); the default 0 makes the sparse path its dense ReLU path,
    the one its evaluation reports."""
    import torch

    path = Path(path)
    name = parse_name(path.name)
    if threshold is not None and (name.activation != "BatchTopKReLU" or name.weighting is not None):
        raise MsaeError(f"--threshold: {path.name} is not a BatchTopK checkpoint (only BatchTopK takes a threshold)")
    if threshold is not None and (threshold < 0 or not math.isfinite(threshold)):
        raise MsaeError(f"--threshold {threshold}: must be a finite number >= 0")
    threshold = threshold or 0.0
    for flag, why in (("tied", "tied weights"), ("normalize", "per-sample input standardisation")):
        if getattr(name, flag):
            raise MsaeError(f"{path}: {why} ({flag}=True) has no msae equivalent")
    if name.soft_cap != 0.0:
        raise MsaeError(f"{path}: latent soft cap {name.soft_cap} (c*tanh(z/c)) has no msae equivalent")
    obj = load_checkpoint(path)
    state = obj["model"]
    unknown = sorted(set(state) - set(STATE_KEYS) - set(IGNORED_KEYS))
    missing = [key for key in STATE_KEYS if key not in state]
    if unknown or missing:
        raise MsaeError(
            f"{path}: state dict keys differ from the official Autoencoder "
            f"(missing {missing or 'none'}, unexpected {unknown or 'none'})"
        )
    expected = {
        "pre_bias": (name.d,),
        "encoder": (name.d, name.n),
        "latent_bias": (name.n,),
        "decoder": (name.n, name.d),
    }
    for key, shape in expected.items():
        if not isinstance(state[key], torch.Tensor) or tuple(state[key].shape) != shape:
            raise MsaeError(
                f"{path}: {key} has shape {tuple(getattr(state[key], 'shape', ()))}, but the file name "
                f"says d={name.d}, n={name.n} (expected {shape})"
            )
    mean = _vector(obj.get("mean_center"), name.d, path)
    scale = _scalar(obj.get("scaling_factor"), "scaling_factor", path)
    if not scale > 0:
        raise MsaeError(f"{path}: scaling_factor {scale} must be > 0")
    tensors = {key: state[key].detach().to(torch.float32) for key in STATE_KEYS}
    bad = [key for key, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise MsaeError(f"{path}: non-finite values in {', '.join(bad)}")
    variant = name.config["variant"]
    parts = Parts(
        config=name.config,
        W_enc=tensors["encoder"],
        b_enc=tensors["latent_bias"],
        W_dec=tensors["decoder"],
        b_pre=tensors["pre_bias"],
        mean=mean,
        scale=scale,
        threshold=torch.tensor(float(threshold)) if variant == "batchtopk" else None,
    )
    details: dict[str, Any] = {"file_name": path.name, "training_data": name.data}
    if obj.get("target_norm") is not None:
        details["target_norm"] = _scalar(obj["target_norm"], "target_norm", path)
    if variant == "batchtopk":
        details["threshold"] = float(threshold)
    return parts, name, details


def import_official(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    modality: str | None = None,
) -> Path:
    """`msae import official PATH --out DIR`: write the checkpoint at PATH (a file or an hf:// spec)
    as an msae run directory. `model`/`pretrained` name the CLIP it was trained on (open_clip
    names) so later stages can check embeddings against it; `modality` defaults to what the
    training data name says (image/text)."""
    from msae.interop.hub import resolve

    local = resolve(path)
    if not local.is_file():
        raise MsaeError(f"{path}: no such checkpoint file")
    parts, name, details = read_official(local, threshold)
    guessed = next((m for m in ("image", "text") if m in name.data), None)
    info = import_info(
        FORMAT,
        os.fspath(path),
        local,
        details,
        model=model,
        pretrained=pretrained,
        dataset=name.data,
        modality=modality or guessed,
    )
    return write_run(parts, out, str(path), info)


def _reason(exc: Exception) -> str:
    """The line of torch's message that names the refused global (without its advice to allow
    it), or its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "WeightsUnpickler error" in line]
    return (named[0].split(" Please use")[0] if named else lines[-1]) if lines else ""


def _numpy_scalar_globals() -> list[Any]:
    """Exactly what unpickling one numpy float64 needs: the scalar constructor (under the names
    numpy 2 and numpy 1 pickle it with), np.dtype and the float64 dtype class."""
    import importlib

    import numpy as np

    try:
        scalar = importlib.import_module("numpy._core.multiarray").scalar  # numpy >= 2
    except ImportError:  # numpy 1.x
        scalar = importlib.import_module("numpy.core.multiarray").scalar
    names = ("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
    return [*((scalar, n) for n in names), np.dtype, type(np.dtype("float64"))]


def _vector(value: Any, d: int, path: Path) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and tuple(value.shape) == (d,):
        return value.detach().to(torch.float32)
    if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, (int, float)):
        return torch.full((d,), _scalar(value, "mean_center", path))
    raise MsaeError(
        f"{path}: mean_center should be a tensor of shape ({d},), got {type(value).__name__} "
        f"{tuple(getattr(value, 'shape', ()))}"
    )


def _scalar(value: Any, key: str, path: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MsaeError(f"{path}: {key} should be a number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise MsaeError(f"{path}: {key} is {number}")
    return number
