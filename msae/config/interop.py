"""`msae import`, `msae export`, `msae push`: SAEs that move between msae and other code."""

from __future__ import annotations

from typing import Literal

from msae.config.base import PathOption, StageConfig, opt
from msae.config.embed import StoreModality

EXCHANGE = "checkpoint provenance (lets later stages check embeddings against the right CLIP)"


class ImportConfig(StageConfig):
    """Write another library's SAE as an msae run directory."""

    path: str = opt(help="the file or folder to import, or hf://owner/repo[/subdir]", positional=True, min_length=1)
    out: PathOption = opt(help="run directory to write, e.g. results/sae/<run>/")
    model: str | None = opt(None, "open_clip model name of the embeddings it was trained on", group=EXCHANGE)
    pretrained: str | None = opt(None, "open_clip pretrained tag of those embeddings", group=EXCHANGE)
    modality: StoreModality | None = opt(None, "modality of the training embeddings", group=EXCHANGE)


class OfficialImportConfig(ImportConfig):
    """Import an official MSAE checkpoint (weights-only loading; the architecture from its state
    dict and file-name convention)."""

    threshold: float | None = opt(
        None,
        "BatchTopK: the inference threshold (the official code has none; default 0 = "
        "the dense ReLU path its evaluation reports)",
        ge=0,
    )


class ExportConfig(StageConfig):
    """Write an msae run in another library's layout (preprocessing folded into the weights)."""

    format: Literal["saelens", "sparsify"] = opt(help="the target library's layout")
    sae: PathOption = opt(help="the msae run directory (results/sae/<run>)")
    out: PathOption = opt(help="folder to write")
    dtype: Literal["float32", "float64"] = opt("float32", "tensor type (float64 round-trips bit-exactly)")


class PushConfig(StageConfig):
    """Upload a run directory to the Hugging Face Hub with a generated model card."""

    sae: PathOption = opt(help="the msae run directory (results/sae/<run>)")
    repo: str = opt(help="owner/name or owner/name/subdir on the Hub", pattern=r"^[\w.-]+/[\w.-]+(/[\w./-]+)?$")
    eval: PathOption | None = opt(None, "the run's evaluation directory (metrics.json goes into the card)")
    private: bool = opt(False, "create the repository as private")
    base_model: str | None = opt(None, "Hub id of the CLIP the SAE decomposes (the card's base_model)")
    message: str | None = opt(None, "commit message")
