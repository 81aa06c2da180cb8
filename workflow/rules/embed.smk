# Embedding stores of the data source (results/embeddings/<data.name>/) and of the vocabulary.
# Images are embedded in shards (`embed.shards`, --shard i/n) and gathered into one store per split.


rule embed_images:
    input:
        DATA["root"],
    output:
        f"{SHARD_ROOT}/{{split}}_image/{{shard}}.parquet",
    params:
        source=DATA["source"],
        dataset=DATA["name"],
        backbone=options(config["backbone"]),
        options=options(config["embed"]["options"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/embed_images/{split}/{shard}.log",
    conda:
        ENV
    shell:
        "msae --log {log} embed --source {params.source} --root {input} --split {wildcards.split} {params.backbone}"
        " --dataset {params.dataset} {params.options} --shard {wildcards.shard} --out {output}"


rule gather_images:
    input:
        lambda wildcards: expand(
            f"{SHARD_ROOT}/{wildcards.split}_image/{{shard}}.parquet", shard=config["embed"]["shards"]
        ),
    output:
        f"{EMBEDDINGS}/{{split}}_image.parquet",
    params:
        shards=lambda wildcards: f"{SHARD_ROOT}/{wildcards.split}_image/*/*.parquet",
    log:
        "results/logs/gather_images/{split}.log",
    conda:
        ENV
    shell:
        "msae --log {log} gather --out {output} {params.shards}"


rule embed_captions:
    input:
        DATA["root"],
    output:
        f"{EMBEDDINGS}/{{split}}_text.parquet",
    params:
        source=DATA["source"],
        dataset=DATA["name"],
        backbone=options(config["backbone"]),
        options=options(config["embed"]["options"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/embed_captions/{split}.log",
    conda:
        ENV
    shell:
        "msae --log {log} embed --source {params.source} --root {input} --split {wildcards.split} --modality text"
        " {params.backbone} --dataset {params.dataset} {params.options} --out {output}"


rule embed_prompts:
    input:
        lambda wildcards: DATA["prompts"][wildcards.prompt]["root"],
    output:
        f"{EMBEDDINGS}/prompts_{{prompt}}.parquet",
    params:
        prompt=lambda wildcards: options(DATA["prompts"][wildcards.prompt]),
        dataset=DATA["name"],
        backbone=options(config["backbone"]),
        options=options(config["embed"]["options"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/embed_prompts/{prompt}.log",
    conda:
        ENV
    shell:
        "msae --log {log} embed --source classes {params.prompt} {params.backbone} --dataset {params.dataset}"
        " {params.options} --out {output}"


rule vocab:
    output:
        VOCAB_TERMS,
    params:
        options=options(config["vocab"]),
    log:
        "results/logs/vocab.log",
    conda:
        ENV
    shell:
        "msae --log {log} vocab {params.options} --out {output}"


rule embed_vocab:
    input:
        VOCAB_TERMS,
    output:
        VOCAB_STORE,
    params:
        backbone=options(config["backbone"]),
        options=options(config["embed"]["options"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/embed_vocab.log",
    conda:
        ENV
    shell:
        "msae --log {log} embed --source terms --root {input} {params.backbone} --dataset vocab {params.options} --out {output}"
