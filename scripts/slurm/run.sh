#!/usr/bin/env bash
# Run the tiny pipeline on the SLURM cluster of scripts/slurm/setup.sh with
# `snakemake --profile workflow/profiles/slurm`, then check that
#   - every scheduled job went through SLURM and completed (sacct, scripts/slurm/jobs.py),
#   - jobs of rules declaring gpu=1 held a GPU and no other job did,
#   - the results equal, byte for byte, those of a local run (`snakemake --cores 2`) of the same
#     tiny project (torch jobs run 2 threads in both, as the profile's set-threads says).
# Prints the squeue lines seen during the run, the sacct table per rule and the times.
#
# Usage: scripts/slurm/run.sh [WORKDIR]   (default: a new folder under $TMPDIR, kept for a look)
# Environment: MSAE_SLURM_FULL=1 runs the default params.yaml instead (the real workload, to
# measure per-rule resources, best on a cluster set up with MSAE_SLURM_MEMORY_KILL=0; no local
# run to compare with). PYTHON: the interpreter with msae,
# snakemake and snakemake-executor-plugin-slurm (default: python on PATH).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/msae-slurm.XXXXXX")}
FULL=${MSAE_SLURM_FULL:-0}
START=$SECONDS

say() { printf '[slurm run %4ds] %s\n' $((SECONDS - START)) "$*"; }
die() { printf 'slurm run: %s\n' "$*" >&2; exit 1; }

scontrol ping >/dev/null 2>&1 || die "no SLURM controller answers: run scripts/slurm/setup.sh first"
sacct -n -X --starttime now-1minutes >/dev/null 2>&1 \
    || die "sacct does not answer: the executor plugin needs accounting (slurmdbd) to see jobs end"
"$PYTHON" -c "import snakemake_executor_plugin_slurm, msae" 2>/dev/null \
    || die "$PYTHON lacks msae or the executor plugin: pip install snakemake-executor-plugin-slurm"
command -v msae >/dev/null || die "msae is not on PATH (the jobs run it): activate the project's environment"

mkdir -p "$WORK"
if [ "$FULL" = 1 ]; then
    "$PYTHON" "$ROOT/scripts/tiny_project.py" make --full "$WORK/slurm" >/dev/null
else
    "$PYTHON" "$ROOT/scripts/tiny_project.py" make "$WORK/slurm" >/dev/null
fi
say "project in $WORK/slurm; running snakemake --profile workflow/profiles/slurm"

slurm_start=$SECONDS
# sacct is cheap on a one-node cluster: ask it every few seconds (the plugin waits 40 s at first).
(cd "$WORK/slurm" && exec "$PYTHON" -m snakemake --profile workflow/profiles/slurm \
    --slurm-init-seconds-before-status-checks 5) > "$WORK/slurm.log" 2>&1 &
snakemake_pid=$!
# What the queue looks like while the run goes on: one sample every 5 s.
while kill -0 "$snakemake_pid" 2>/dev/null; do
    squeue -h -o '%.7i %.4P %.8T %.6M %.3C %.6m %.12b %k' >> "$WORK/squeue.log" 2>/dev/null || true
    sleep 5
done
status=0
wait "$snakemake_pid" || status=$?
slurm_s=$((SECONDS - slurm_start))
if [ "$status" != 0 ]; then
    tail -n 40 "$WORK/slurm.log" >&2
    die "the SLURM run failed (exit $status); log: $WORK/slurm.log"
fi
say "SLURM run finished in ${slurm_s}s"

echo "squeue while running (JOBID PARTITION STATE TIME CPUS MEMORY GRES COMMENT), a few samples:"
grep RUNNING "$WORK/squeue.log" | awk '!seen[$1]++' | head -n 8 || true

"$PYTHON" "$HERE/jobs.py" check "$WORK/slurm.log" --project "$WORK/slurm" --json "$WORK/jobs.json"

if [ "$FULL" = 1 ]; then
    say "done (default params: no local run to compare with)"
    exit 0
fi

"$PYTHON" "$ROOT/scripts/tiny_project.py" make "$WORK/local" >/dev/null
local_start=$SECONDS
(cd "$WORK/local" && exec "$PYTHON" -m snakemake --cores 2) > "$WORK/local.log" 2>&1 \
    || { tail -n 40 "$WORK/local.log" >&2; die "the local run failed; log: $WORK/local.log"; }
say "local run finished in $((SECONDS - local_start))s"
"$PYTHON" "$ROOT/scripts/tiny_project.py" compare "$WORK/slurm" "$WORK/local"
say "OK: SLURM ${slurm_s}s, local $((SECONDS - local_start))s, total $((SECONDS - START))s"
