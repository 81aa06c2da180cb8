"""The Hugging Face model card (README.md) of a published SAE, written from its config.json and,
when given, the metrics.json of `msae evaluate`.

YAML front matter for the Hub (library_name msae, tags, base_model when the backbone is a Hub
model), then what a reader needs to reuse the SAE: the variant and its sizes, where the training
data came from, the metrics on both evaluation paths, and the one line that loads it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

PATHS = ("dense", "sparse")
PATH_TITLES = {"dense": "dense path (ReLU over all latents)", "sparse": "sparse path (the model's own activation)"}
LABELS = {  # metrics.json keys in reading order; other keys follow under their own names
    "fvu": "FVU, fraction of variance unexplained (lower is better)",
    "fvu_dataset": "FVU over the whole evaluation set",
    "cs": "cosine similarity of reconstruction and input",
    "cknna": "CKNNA alignment with the input",
    "l0_zero_fraction": "L0, fraction of latents at zero (higher is sparser)",
    "active": "active latents per input",
    "ndn": "latents never active on the evaluation set",
    "lp_kl": "linear probe KL, original vs reconstruction (lower is better)",
    "lp_agree": "linear probe agreement",
    "lp_acc_recon": "linear probe accuracy on reconstructions",
    "zeroshot_acc_recon": "zero-shot accuracy on reconstructions",
    "recall1_recon": "retrieval R@1 with reconstructions",
    "recall5_recon": "retrieval R@5 with reconstructions",
    "n_eval": "evaluation inputs",
    "do": "decoder orthogonality (mean |cos| between atoms)",
    "ndn_train": "latents dead at the end of training",
    "ndn_sparse": "latents never active on the sparse path",
    "lp_acc_orig": "linear probe accuracy on the original embeddings",
    "zeroshot_acc_orig": "zero-shot accuracy on the original embeddings",
    "zeroshot_retained": "zero-shot accuracy retained",
    "recall1_orig": "retrieval R@1 with the original embeddings",
    "recall1_retained": "retrieval R@1 retained",
    "recall5_orig": "retrieval R@5 with the original embeddings",
    "recall5_retained": "retrieval R@5 retained",
}
NOT_METRICS = {"variant", "n_latents", "d"}  # in metrics.json, but already in the model table


def model_card(
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    path: str = "",
    base_model: str | None = None,
) -> str:
    """README.md text for the SAE whose config.json is `config` (metrics.json optional)."""
    data = config.get("data") or {}
    base = base_model or _hub_model(data)
    front: dict[str, Any] = {"library_name": "msae", "tags": _tags(config, data)}
    if base:
        front["base_model"] = base
    where = f"{repo_id}/{path}".rstrip("/") if repo_id else None
    title = where or f"msae {config.get('variant', 'SAE')}"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {title}",
        "",
        (
            f"{describe(config)} trained with msae on {_backbone(data)} embeddings. "
            "It maps raw embeddings: the input centring and scaling are stored inside the model."
        ),
        "",
    ]
    lines += ["## Model", "", "| | |", "|---|---|", *_rows(_model_rows(config)), ""]
    lines += ["## Training data", "", *_provenance(config, data), ""]
    evaluation = _metrics(metrics) if metrics else ["No evaluation was published with this SAE."]
    lines += ["## Evaluation", "", *evaluation, ""]
    load_spec = f"hf://{where}" if where else "path/to/this/directory"
    lines += [
        "## Use",
        "",
        "```python",
        "from msae.sae import load",
        "",
        f'sae = load("{load_spec}")',
        "z = sae.encode(embeddings)        # sparse latents of RAW embeddings [B, n]",
        "x_hat = sae.decode(z)             # reconstruction in embedding space",
        "```",
        "",
    ]
    return "\n".join(lines)


def describe(config: dict[str, Any]) -> str:
    """One phrase naming the variant and its sparsity, e.g. 'A TopK sparse autoencoder (k = 64)'."""
    variant = config.get("variant")
    if variant == "topk":
        return f"A TopK sparse autoencoder (k = {config.get('k')})"
    if variant == "batchtopk":
        return (
            f"A BatchTopK sparse autoencoder (k = {config.get('k')} per input on average in training, "
            "a fixed threshold at inference)"
        )
    if variant == "matryoshka":
        nesting = ", ".join(map(str, config.get("nesting") or []))
        weighting = str(config.get("weighting", "")).upper()
        return f"A Matryoshka sparse autoencoder (MSAE, {weighting} weighting, nested top-k levels {nesting})"
    if variant == "relu":
        return f"A ReLU sparse autoencoder (L1 weight {config.get('l1')})"
    if variant == "jumprelu":
        return f"A JumpReLU sparse autoencoder (L0 weight {config.get('l0_coef')})"
    return f"A {variant} sparse autoencoder"


def _model_rows(config: dict[str, Any]) -> list[tuple[str, Any]]:
    rows = [
        ("variant", config.get("variant")),
        ("input width d", config.get("d")),
        ("latents n", config.get("n_latents")),
    ]
    rows += [
        (key, config[key])
        for key in ("k", "nesting", "weighting", "inner", "l1", "l0_coef", "bandwidth")
        if config.get(key) is not None
    ]
    rows += [("reconstruction loss", config.get("loss")), ("input scale", config.get("scale_mode"))]
    return [
        (name, ", ".join(map(str, value)) if isinstance(value, list) else value)
        for name, value in rows
        if value is not None
    ]


def _provenance(config: dict[str, Any], data: dict[str, Any]) -> list[str]:
    rows = [
        (key, data[key])
        for key in ("dataset", "split", "modality", "model", "pretrained", "rows", "sha256")
        if data.get(key) is not None
    ]
    training = config.get("training") or {}
    rows += [
        (key, training[key]) for key in ("epochs", "batch_size", "lr", "seed", "steps") if training.get(key) is not None
    ]
    if config.get("final_dead_latents") is not None:
        rows.append(("dead latents at the end of training", config["final_dead_latents"]))
    lines = ["| | |", "|---|---|", *_rows(rows)] if rows else ["The training data was not recorded."]
    source = config.get("source")
    if isinstance(source, dict):
        name = str(source.get("path", "")).rsplit("/", 1)[-1]
        lines += [
            "",
            f"Converted by msae from the {source.get('format')} checkpoint (`{name}`, sha256 {source.get('sha256')}).",
        ]
    return lines


def _metrics(metrics: dict[str, Any]) -> list[str]:
    blocks = [p for p in PATHS if isinstance(metrics.get(p), dict)]
    lines: list[str] = []
    if blocks:
        keys = _ordered({k for p in blocks for k in metrics[p] if not k.endswith("_std") and _is_number(metrics[p][k])})
        lines += [f"| metric | {' | '.join(PATH_TITLES[p] for p in blocks)} |", f"|---|{'---|' * len(blocks)}"]
        lines += [f"| {LABELS.get(k, k)} | " + " | ".join(_value(metrics[p], k) for p in blocks) + " |" for k in keys]
    in_blocks = {k for p in blocks for k in metrics[p]}
    top = _ordered(
        {
            k
            for k, v in metrics.items()
            if _is_number(v) and not k.endswith("_std") and k not in in_blocks and k not in NOT_METRICS
        }
    )
    if top:
        lines += ["", "| | |", "|---|---|", *[f"| {LABELS.get(k, k)} | {_value(metrics, k)} |" for k in top]]
    return lines


def _ordered(keys: set[str]) -> list[str]:
    known = [k for k in LABELS if k in keys]
    return known + sorted(keys - set(known))


def _value(block: dict[str, Any], key: str) -> str:
    value, std = block.get(key), block.get(f"{key}_std")
    if not _is_number(value):
        return ""
    text = _number(value)
    return f"{text} ± {_number(std)}" if _is_number(std) else text


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rows(rows: list[tuple[str, Any]]) -> list[str]:
    return [f"| {name} | {value} |" for name, value in rows]


def _backbone(data: dict[str, Any]) -> str:
    if data.get("model"):
        detail = f" ({data['pretrained']})" if data.get("pretrained") else ""
        return f"`{data['model']}`{detail} {data.get('modality') or ''}".rstrip()
    return "CLIP"


def _hub_model(data: dict[str, Any]) -> str | None:
    """The backbone as a Hub model id when open_clip loaded it from the Hub (hf-hub:org/name)."""
    for value in (data.get("pretrained"), data.get("model")):
        if isinstance(value, str) and value.startswith("hf-hub:"):
            return value[len("hf-hub:") :]
    return None


def _tags(config: dict[str, Any], data: dict[str, Any]) -> list[str]:
    tags = ["msae", "sparse-autoencoder", "interpretability", "clip"]
    variant = config.get("variant")
    if variant:
        tags.append(f"{variant}-sae")
    if data.get("model"):
        tags.append(re.sub(r"[^a-z0-9.-]+", "-", str(data["model"]).lower()).strip("-"))
    return tags
