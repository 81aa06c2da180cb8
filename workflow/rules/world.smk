# The offline world: `msae world render` per entry of `worlds:` (images, captions, attributes).


rule world:
    output:
        directory("results/world/{world}"),
    params:
        options=lambda wildcards: options(config["worlds"][wildcards.world]),
    log:
        "results/logs/world/{world}.log",
    conda:
        ENV
    shell:
        "msae --log {log} world render {params.options} --out {output}"
