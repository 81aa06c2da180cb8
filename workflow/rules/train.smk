# One SAE per entry of `runs:` (results/sae/<run>/: model.safetensors, config.json, train_log.csv).


rule train:
    input:
        f"{EMBEDDINGS}/{DATA['train']}_image.parquet",
    output:
        directory("results/sae/{run}"),
    params:
        options=lambda wildcards: options(config["runs"][wildcards.run]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/train/{run}.log",
    conda:
        ENV
    shell:
        "msae --log {log} train {params.options} --embeddings {input} --out {output}"
