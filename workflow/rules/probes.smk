# The paper's downstream probes per run: concept-controlled similarity search and the
# counterfactual bias analysis (results/probes/<run>/similarity/ and .../bias/).


rule probe_similarity:
    input:
        sae="results/sae/{run}",
        concepts="results/concepts/{run}",
        stores=STORES,
    output:
        directory("results/probes/{run}/similarity"),
    params:
        options=options(config["probes"]["similarity"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/probe_similarity/{run}.log",
    conda:
        ENV
    shell:
        "msae --log {log} probe similarity --sae {input.sae} --concepts {input.concepts}/latents.parquet {params.options}"
        " --out {output}"


rule probe_bias:
    input:
        sae="results/sae/{run}",
        concepts="results/concepts/{run}",
        stores=STORES,
    output:
        directory("results/probes/{run}/bias"),
    params:
        options=options(config["probes"]["bias"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/probe_bias/{run}.log",
    conda:
        ENV
    shell:
        "msae --log {log} probe bias --sae {input.sae} --concepts {input.concepts}/latents.parquet {params.options}"
        " --out {output}"
