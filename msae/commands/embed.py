"""`msae embed` (one source through a CLIP backbone into an embedding store), `msae gather`
(concatenate the shard stores of a split `msae embed --shard i/n` run) and `msae mix` (the image
and caption stores of a split as one store of both modalities)."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.embed import EmbedConfig, GatherConfig, MixConfig


def run(config: EmbedConfig) -> int:
    from msae.embed import embed_run, skipped_path
    from msae.sources import TEXT_SOURCES

    summary = embed_run(config)
    modality = config.modality or ("text" if config.source in TEXT_SOURCES else "image")
    resumed = f", {summary.resumed_chunks} chunk(s) resumed" if summary.resumed_chunks else ""
    skipped = f", {summary.skipped} skipped (listed in {skipped_path(config.out)})" if summary.skipped else ""
    print(
        f"msae embed: wrote {summary.rows} {modality} embeddings to {config.out} in {summary.seconds:.1f}s"
        f"{resumed}{skipped}"
    )
    return 0


def run_gather(config: GatherConfig) -> int:
    from msae.gather import gather_run

    rows = gather_run(config)
    print(f"msae gather: wrote {rows} rows from {len(config.shards)} store(s) to {config.out}")
    return 0


def run_mix(config: MixConfig) -> int:
    from msae.mix import mix_run

    rows = mix_run(config)
    print(f"msae mix: wrote {rows} image and text embeddings to {config.out}")
    return 0


COMMANDS = (
    Command(
        "embed",
        help="embed images or texts of a source with a CLIP backbone into an embedding Parquet store",
        description=(
            "Embed a source with an open_clip backbone and write the embedding store (id, embedding, "
            "label/text/path/attr_* columns; raw, not L2-normalised). Finished chunks are kept in "
            "OUT.parts/ so an interrupted run resumes; unreadable images are listed in OUT.skipped.csv."
        ),
        spec=single(EmbedConfig),
        run=run,
        order=20,
    ),
    Command(
        "gather",
        help="concatenate the shard stores of `msae embed --shard i/n` into one store",
        description=(
            "Concatenate shard stores (in shard order from their metadata) into one store, checking they "
            "share backbone, modality, dim, dataset and split and that no id repeats."
        ),
        spec=single(GatherConfig),
        run=run_gather,
        order=21,
    ),
    Command(
        "mix",
        help="mix the image and caption stores of a split into one store, to train on both modalities",
        description=(
            "Interleave an image store and a caption store of the same backbone into one store of "
            "modality 'both' (ids image:<id> and text:<id>, a modality column), for an SAE trained on "
            "image and text embeddings at once; evaluate it on each modality with --modality."
        ),
        spec=single(MixConfig),
        run=run_mix,
        order=22,
    ),
)
