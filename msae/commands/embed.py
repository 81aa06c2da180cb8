"""`msae embed` (one source through a CLIP backbone into an embedding store) and `msae gather`
(concatenate the shard stores of a split `msae embed --shard i/n` run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ORDER = 20
HELP = "embed images or texts of a source with a CLIP backbone into an embedding Parquet store"
GATHER_HELP = "concatenate the shard stores of `msae embed --shard i/n` into one store"
# Mirrors msae.sources.SOURCES (kept literal so `msae --help` does not import pandas; a test
# checks they agree).
SOURCE_KINDS = ("world", "folder", "manifest", "webdataset", "celeba", "terms", "classes")

ROOT_HELP = (
    "world: the render folder (manifest.parquet); folder: ROOT/<class>/<image>; manifest: a .csv/.tsv/"
    ".parquet file with a path column; webdataset: a .tar or a folder of .tar shards; celeba: the folder "
    "with img_align_celeba/ and list_attr_celeba.txt; terms/classes: a text file, one entry per line"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help=HELP,
        description=(
            "Embed a source with an open_clip backbone and write the embedding store (id, embedding, "
            "label/text/path/attr_* columns; raw, not L2-normalised). Finished chunks are kept in "
            "OUT.parts/ so an interrupted run resumes; unreadable images are listed in OUT.skipped.csv."
        ),
    )
    parser.add_argument("--source", required=True, choices=SOURCE_KINDS, help="kind of source")
    parser.add_argument("--root", required=True, type=Path, help=ROOT_HELP)
    parser.add_argument("--split", default=None,
                        help="split to embed (world: train/val/test/bias_train/bias_control; celeba: train/val/test; "
                             "manifest: its split column; folder: the sub-folder ROOT/SPLIT/<class>/); default: all rows")
    parser.add_argument("--modality", choices=("image", "text"), default=None,
                        help="image sources: embed the images or their captions (text; same ids); default: image, "
                             "text for terms/classes")
    parser.add_argument("--template", dest="templates", action="append", default=[], metavar="T",
                        help="prompt template with one {} (terms: at most one, e.g. 'a photo of {}.'; classes: "
                             "repeat to average several, default 'a photo of a {}.')")
    parser.add_argument("--model", required=True, help="open_clip model name, e.g. ViT-B-32, or msae-world")
    parser.add_argument("--pretrained", required=True,
                        help="open_clip pretrained tag (e.g. openai), a local checkpoint file "
                             "(.safetensors/.pt/.pth/.bin), or 'builtin' for --model msae-world")
    parser.add_argument("--dataset", default=None, help="dataset name stored in the metadata; default: the root's name")
    parser.add_argument("--out", required=True, type=Path, help="output .parquet store")
    parser.add_argument("--batch-size", type=int, default=256, help="images or texts per forward pass; default: %(default)s")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader processes decoding images; default: CPU cores - 1 (at most 8)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--shard", default="0/1", help="embed only contiguous slice i of n (0-based), e.g. 2/8; default: %(default)s")
    parser.add_argument("--max-bad-fraction", type=float, default=0.01,
                        help="fail (writing no output) when more than this fraction of images is unreadable; default: %(default)s")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="rows per resumable chunk in OUT.parts/; default: %(default)s")
    parser.set_defaults(func=run)

    gather_parser = subparsers.add_parser(
        "gather",
        help=GATHER_HELP,
        description=(
            "Concatenate shard stores (in shard order from their metadata) into one store, checking they "
            "share backbone, modality, dim, dataset and split and that no id repeats."
        ),
    )
    gather_parser.add_argument("--out", required=True, type=Path, help="output .parquet store")
    gather_parser.add_argument("shards", nargs="+", type=Path, metavar="SHARD.parquet", help="the shard stores")
    gather_parser.set_defaults(func=run_gather)


def run(args: argparse.Namespace) -> int:
    from msae.backbone import check_backbone
    from msae.embed import embed_catalogue, parse_shard
    from msae.runtime import configure_torch, resolve_device
    from msae.sources import TEXT_SOURCES, open_source

    modality = args.modality or ("text" if args.source in TEXT_SOURCES else "image")
    shard = parse_shard(args.shard)
    check_backbone(args.model, args.pretrained)  # fail on a typo before indexing a large source
    resolve_device(args.device)
    catalogue = open_source(args.source, args.root, split=args.split, modality=modality, templates=args.templates)
    for note in catalogue.notes:
        print(f"msae embed: {catalogue.name}: {note}", file=sys.stderr)
    configure_torch()
    extra = {"source": args.source}
    if args.templates:
        extra["templates"] = list(args.templates)
    summary = embed_catalogue(
        catalogue,
        args.out,
        model=args.model,
        pretrained=args.pretrained,
        dataset=args.dataset or args.root.resolve().stem,
        split=args.split or "all",
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        shard=shard,
        max_bad_fraction=args.max_bad_fraction,
        chunk_rows=args.chunk_size,
        extra_meta=extra,
    )
    resumed = f", {summary.resumed_chunks} chunk(s) resumed" if summary.resumed_chunks else ""
    skipped = f", {summary.skipped} skipped (listed in {args.out.with_suffix('.skipped.csv')})" if summary.skipped else ""
    print(f"msae embed: wrote {summary.rows} {modality} embeddings to {args.out} in {summary.seconds:.1f}s{resumed}{skipped}")
    return 0


def run_gather(args: argparse.Namespace) -> int:
    from msae.embed import gather

    rows = gather(args.shards, args.out)
    print(f"msae gather: wrote {rows} rows from {len(args.shards)} store(s) to {args.out}")
    return 0
