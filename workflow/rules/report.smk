# The comparison of all runs (results/report/: summary.json, tables, Pareto plot, curves, index.html).
# `msae report` reads every run folder under results/sae (delete the folders of removed runs).


rule report:
    input:
        expand("results/sae/{run}", run=config["runs"]),
        expand("results/eval/{run}/metrics.json", run=config["runs"]),
        expand("results/eval/{run}/progressive.csv", run=config["runs"]),
        expand("results/concepts/{run}", run=config["runs"]),
        expand("results/probes/{run}/{probe}", run=config["runs"], probe=["similarity", "bias"]),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.png"],
            category="Comparison",
            labels={"figure": "{name}"},
        ),
    log:
        "results/logs/report.log",
    conda:
        ENV
    shell:
        "msae --log {log} report --runs results/sae --eval results/eval --concepts results/concepts --probes results/probes"
        " --out {output}"
