# msae pipeline for Snakemake: world -> embed -> train -> evaluate -> concepts -> probes -> report.
#
# Every rule runs one `msae ...` command with all its parameters on the command line, taken from
# params.yaml; dvc.yaml describes the same jobs for DVC (tests/test_pipeline_dag.py proves both
# expand to the same commands, inputs and outputs). Run: `snakemake --cores all`.
from msae.params import embeddings_dir, options, stores, validate_params


configfile: "params.yaml"


# Refuse bad parameters before any job starts; the message names the bad key.
validate_params(config, source="params.yaml (with any --config overrides)")

DATA = config["data"]
EMBEDDINGS = embeddings_dir(config)
SHARD_ROOT = f"results/shards/{DATA['name']}"
VOCAB_TERMS = "results/vocab/terms.txt"
VOCAB_STORE = "results/embeddings/vocab/terms.parquet"
# Threads of a torch job (Snakemake caps them at --cores; set-threads in a profile overrides).
# Torch jobs also take the one `gpu` resource, so on a small CPU machine they run one at a time
# with all its cores instead of slowing each other down.
TORCH_THREADS = 8
ENV = "../envs/msae.yaml"  # conda: paths are relative to the rule files in workflow/rules
# Every store of the data source; stages that read some of them depend on all (as DVC's stages
# depend on the folder EMBEDDINGS), so which store feeds which option stays a params.yaml choice.
STORES = stores(config)

wildcard_constraints:
    run=r"[A-Za-z_][A-Za-z0-9_]*",
    world=r"[A-Za-z_][A-Za-z0-9_]*",
    split=r"[A-Za-z0-9_]+",
    shard=r"\d+/\d+",
    prompt=r"[A-Za-z0-9_]+",


include: "workflow/rules/world.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/concepts.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report",
