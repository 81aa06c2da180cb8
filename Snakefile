# msae pipeline for Snakemake: world -> embed -> train -> evaluate -> concepts -> probes -> report.
#
# The rules (workflow/rules/stages.smk) and dvc.yaml are generated from one table of stages
# (msae/pipeline/stages.py; `msae pipeline write`), so both tools run the same jobs with the same
# command lines; every parameter comes from params.yaml. Run: `snakemake --cores all`.
from msae.pipeline.params import options, stores, validate_params
from msae.report.browser.labels import gallery_labels


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


# With --software-deployment-method apptainer every job runs in this image (containers/msae.def).
container: "containers/msae.sif"


# Refuse bad parameters before any job starts; the message names the bad key.
validate_params(config, source="params.yaml (with any --config overrides)")

# Threads of a torch job (Snakemake caps them at --cores; set-threads in a profile overrides).
# Torch jobs also take the one `gpu` resource, so on a small CPU machine they run one at a time
# with all its cores instead of slowing each other down.
TORCH_THREADS = 8
ENV = "../envs/msae.yaml"  # conda: paths are relative to the rule files in workflow/rules
# Every store of the data source; stages that read some of them depend on all (as DVC's stages
# depend on their folder), so which store feeds which option stays a params.yaml choice.
STORES = stores(config)


wildcard_constraints:
    run=r"[A-Za-z_][A-Za-z0-9_]*",
    world=r"[A-Za-z_][A-Za-z0-9_]*",
    split=r"[A-Za-z0-9_]+",
    shard=r"\d+/\d+",
    prompt=r"[A-Za-z0-9_]+",


include: "workflow/rules/stages.smk"


rule all:
    default_target: True
    input:
        "results/report",
