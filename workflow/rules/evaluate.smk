# Metrics of each run (results/eval/<run>/metrics.json, progressive.csv); the stores used are
# the `evaluate:` options (embeddings, probe-train, text-embeddings, class-embeddings).


rule evaluate:
    input:
        sae="results/sae/{run}",
        stores=STORES,
    output:
        metrics=report(
            "results/eval/{run}/metrics.json",
            category="Metrics",
            labels={"run": "{run}", "file": "metrics.json"},
        ),
        progressive="results/eval/{run}/progressive.csv",
    params:
        options=options(config["evaluate"]),
        out="results/eval/{run}",
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/evaluate/{run}.log",
    conda:
        ENV
    shell:
        "msae --log {log} evaluate --sae {input.sae} {params.options} --out {params.out}"
