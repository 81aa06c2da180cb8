# Named concepts of each run (results/concepts/<run>/: names, valid latents, galleries).


rule concepts:
    input:
        sae="results/sae/{run}",
        vocab=VOCAB_STORE,
        stores=STORES,
    output:
        report(
            directory("results/concepts/{run}"),
            patterns=["galleries/{name}.png"],
            category="Concept galleries",
            subcategory="{run}",
            labels={"run": "{run}", "latent": "{name}"},
        ),
    params:
        options=options(config["concepts"]),
    resources:
        gpu=1,
    threads: TORCH_THREADS
    log:
        "results/logs/concepts/{run}.log",
    conda:
        ENV
    shell:
        "msae --log {log} concepts --sae {input.sae} --vocab {input.vocab} {params.options} --out {output}"
