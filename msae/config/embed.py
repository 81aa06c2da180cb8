"""`msae embed`, `msae gather` and `msae vocab`: from a source to an embedding store."""

from __future__ import annotations

from typing import Literal

from msae.config.base import PathList, PathOption, StageConfig, StrList, device_option, opt

# The kinds of source `msae embed` reads (msae.sources has one reader per kind).
ImageSource = Literal["world", "folder", "manifest", "webdataset", "celeba"]
TextSource = Literal["terms", "classes"]
SourceKind = Literal[ImageSource, TextSource]
Modality = Literal["image", "text"]  # what `msae embed` makes
# What a store holds: one modality, or both (`msae mix`: the image and caption stores of a split).
StoreModality = Literal["image", "text", "both"]
ROOT_HELP = (
    "world: the render folder (manifest.parquet); folder: ROOT/<class>/<image>; manifest: a .csv/.tsv/"
    ".parquet file with a path column; webdataset: a .tar or a folder of .tar shards; celeba: the folder "
    "with img_align_celeba/ and list_attr_celeba.txt; terms/classes: a text file, one entry per line"
)


class BackboneOptions(StageConfig):
    """The CLIP whose embeddings the SAEs decompose (params.yaml `backbone`)."""

    model: str = opt(
        help="open_clip model name, e.g. ViT-B-32, or msae-world",
        min_length=1,
        pinned=True,
        pattern=r"^[A-Za-z0-9_.@/:-]+$",
    )
    pretrained: str = opt(
        help="open_clip pretrained tag (e.g. openai), a local checkpoint file "
        "(.safetensors/.pt/.pth/.bin), or 'builtin' for --model msae-world",
        min_length=1,
        pinned=True,
    )


class EmbedConfig(BackboneOptions):
    """Embed one source with an open_clip backbone into an embedding store."""

    source: SourceKind = opt(help="kind of source")
    root: PathOption = opt(help=ROOT_HELP)
    split: str | None = opt(
        None,
        "split to embed (world: train/val/test/bias_train/bias_control; celeba: "
        "train/val/test; manifest: its split column; folder: the sub-folder ROOT/SPLIT/<class>/); "
        "default: all rows",
        pattern=r"^[A-Za-z0-9_]+$",
    )
    modality: Modality | None = opt(
        None,
        "image sources: embed the images or their captions (text; same ids); default: image, text for terms/classes",
    )
    template: StrList = opt(
        (),
        "prompt template with one {} (terms: at most one, e.g. 'a photo of {}.'; classes: "
        "repeat to average several, default 'a photo of a {}.')",
        metavar="T",
    )
    dataset: str | None = opt(None, "dataset name stored in the metadata; default: the root's name")
    out: PathOption = opt(help="output .parquet store")
    batch_size: int = opt(256, "images or texts per forward pass", ge=1)
    workers: int | None = opt(None, "DataLoader processes decoding images; default: CPU cores - 1 (at most 8)", ge=0)
    device: str = device_option()
    shard: str = opt("0/1", "embed only contiguous slice i of n (0-based), e.g. 2/8", pattern=r"^[0-9]+/[1-9][0-9]*$")
    max_bad_fraction: float = opt(
        0.01, "fail (writing no output) when more than this fraction of images is unreadable", ge=0, le=1
    )
    chunk_size: int = opt(4096, "rows per resumable chunk in OUT.parts/", ge=1)
    allow_outside_root: bool = opt(
        False,
        "world/manifest/celeba: accept image paths that are absolute or lead outside the folder of the "
        "manifest (by default such a row is refused, so a table cannot make msae read arbitrary files)",
    )


class GatherConfig(StageConfig):
    """Concatenate the shard stores of `msae embed --shard i/n` into one store."""

    out: PathOption = opt(help="output .parquet store")
    shards: PathList = opt(help="the shard stores", positional=True, metavar="SHARD.parquet")


class MixConfig(StageConfig):
    """Mix the image and caption stores of one split into one store (modality `both`), for SAEs
    trained on both modalities at once."""

    image: PathOption = opt(help="the image store (.parquet, from msae embed or gather)")
    text: PathOption = opt(help="the caption store of the same backbone (msae embed --modality text)")
    out: PathOption = opt(help="output .parquet store (ids become image:<id> and text:<id>)")


class VocabConfig(StageConfig):
    """The naming vocabulary: the world's attribute words plus common English words."""

    out: PathOption = opt(help="output term file (.txt)")
    n_common: int = opt(3000, "number of common English words added", ge=0)
    no_world: bool = opt(False, "leave out the offline world's attribute words")
    min_length: int = opt(3, "shortest common word kept, in letters", ge=1)
    blocklist: PathOption | None = opt(
        None, "file of words to leave out (one per line); default: the better-profanity package's list"
    )
