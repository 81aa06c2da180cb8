#!/usr/bin/env bash
# Share results through a DVC remote (a local folder, a real DVC remote type), as README's
# "Scaling out" describes, on the tiny pipeline:
#   clone A:  snakemake; msae sync --after snakemake; dvc push --run-cache; git commit
#   clone B:  git clone A; dvc pull; msae sync --after dvc
# and checks that in A, after the sync, neither `snakemake -n` nor `dvc status` has anything to
# do, and in B that
#   1. `snakemake -n` has nothing to do,
#   2. `dvc status` is clean and `dvc repro` runs no stage,
#   3. after changing one run in params.yaml, `snakemake -n` schedules only that run's jobs (and
#      the report), and `dvc repro` runs only that run's stages (and the report, the params check).
# Each check prints PASS or FAIL with what it saw; the script exits 1 when any fails.
#
# Usage: scripts/dvc-remote.sh [WORKDIR]   (default: a new folder under $TMPDIR, kept for a look)
# Environment: PYTHON, the interpreter with msae, snakemake and dvc (default: python on PATH).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PYTHON=${PYTHON:-python}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/msae-remote.XXXXXX")}
EDITED=topk                     # the run changed in B (one of the tiny project's runs)
GLOBAL_STAGES="report check_params"   # stages that read every run: they rerun too
START=$SECONDS
FAILED=0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}  # as Snakemake sets per job

say() { printf '[dvc remote %4ds] %s\n' $((SECONDS - START)) "$*"; }
die() { printf 'dvc remote: %s\n' "$*" >&2; exit 2; }
check() {  # check NAME OK(0/1) DETAIL
    if [ "$2" = 0 ]; then echo "PASS  $1"; else echo "FAIL  $1: $3"; FAILED=1; fi
}
git_() { git -c user.name=msae-scripts -c user.email=scripts@msae.invalid "$@"; }
tool() { "$PYTHON" -m "$@"; }
ran_stages() { grep -o "Running stage '[^']*'" "$1" | sed "s/Running stage '\(.*\)'/\1/" | sort -u | tr '\n' ' '; }
planned_jobs() {  # planned_jobs LOGNAME: the jobs a dry run schedules, one "rule wildcards" a line
    tool snakemake --dry-run --cores 1 > "$WORK/$1.log" 2>&1 || die "snakemake --dry-run failed: $WORK/$1.log"
    "$PYTHON" - "$WORK/$1.log" <<'PY'
import re, sys
for block in re.split(r"\n(?=rule \w+:)", open(sys.argv[1]).read()):
    rule = re.match(r"rule (\w+):", block)
    if rule and rule.group(1) != "all":
        wildcards = re.search(r"^    wildcards: (.*)$", block, re.M)
        print(rule.group(1), wildcards.group(1) if wildcards else "")
PY
}
count_keys() { "$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$1" 2>/dev/null || echo "?"; }

command -v msae >/dev/null || die "msae is not on PATH: activate the project's environment"
mkdir -p "$WORK"
REMOTE=$WORK/remote
A=$WORK/A
B=$WORK/B

# --- clone A: run, record, push.
"$PYTHON" "$ROOT/scripts/tiny_project.py" make "$A" >/dev/null || die "could not make the tiny project"
cd "$A" || exit 2
tool dvc remote add -d store "$REMOTE" >/dev/null && git_ add .dvc/config && git_ commit -qm "remote" \
    || die "dvc remote add failed"
t=$SECONDS
tool snakemake --cores 2 > "$WORK/A-snakemake.log" 2>&1 || die "snakemake failed in A: $WORK/A-snakemake.log"
say "A: snakemake ran the tiny pipeline in $((SECONDS - t))s"
msae sync --after snakemake > "$WORK/A-sync.log" 2>&1 || die "msae sync --after snakemake failed in A: $WORK/A-sync.log"
# A goes on working too: recording the outputs for DVC must not make Snakemake want them again.
planned_jobs A-dry-run > "$WORK/A-dry-run.jobs" || exit 2
jobs=$(cat "$WORK/A-dry-run.jobs")
check "A: after msae sync --after snakemake, snakemake -n has nothing to do" "$([ -z "$jobs" ]; echo $?)" \
    "would run $(echo "$jobs" | wc -l) job(s): $(echo "$jobs" | cut -d' ' -f1 | sort | uniq -c | tr -s ' \n' ' ')"
tool dvc status --json > "$WORK/A-status.json" 2>/dev/null
check "A: dvc status is clean" "$([ "$(tr -d ' \n' < "$WORK/A-status.json")" = "{}" ]; echo $?)" \
    "$(count_keys "$WORK/A-status.json") stage(s) changed: $(head -c 300 "$WORK/A-status.json")"
t=$SECONDS
tool dvc push --run-cache > "$WORK/A-push.log" 2>&1 || die "dvc push failed: $WORK/A-push.log"
say "A: msae sync --after snakemake; dvc push --run-cache in $((SECONDS - t))s ($(du -sh "$REMOTE" | cut -f1) in the remote)"
git_ add -A && git_ commit -qm "results of the tiny pipeline" || die "git commit failed in A"

# --- clone B: pull, record.
git clone -q "$A" "$B" || die "git clone failed"
cd "$B" || exit 2
t=$SECONDS
tool dvc pull > "$WORK/B-pull.log" 2>&1 || die "dvc pull failed in B: $WORK/B-pull.log"
say "B: dvc pull in $((SECONDS - t))s"
sync_ok=0
msae sync --after dvc > "$WORK/B-sync.log" 2>&1 || sync_ok=1
check "B: msae sync --after dvc succeeds" $sync_ok "$(tail -n 3 "$WORK/B-sync.log" | tr '\n' ' ')"

# 1. Snakemake has nothing to do.
planned_jobs B-dry-run > "$WORK/B-dry-run.jobs" || exit 2
jobs=$(cat "$WORK/B-dry-run.jobs")
check "B: snakemake -n has nothing to do" "$([ -z "$jobs" ]; echo $?)" \
    "would run $(echo "$jobs" | wc -l) job(s): $(echo "$jobs" | cut -d' ' -f1 | sort | uniq -c | tr -s ' \n' ' ')"

# 2. DVC has nothing to do.
tool dvc status --json > "$WORK/B-status.json" 2>/dev/null
check "B: dvc status is clean" "$([ "$(tr -d ' \n' < "$WORK/B-status.json")" = "{}" ]; echo $?)" \
    "$(count_keys "$WORK/B-status.json") stage(s) changed: $(head -c 300 "$WORK/B-status.json")"
t=$SECONDS
tool dvc repro > "$WORK/B-repro.log" 2>&1 || check "B: dvc repro exits 0" 1 "$WORK/B-repro.log"
ran=$(ran_stages "$WORK/B-repro.log")
check "B: dvc repro runs no stage ($((SECONDS - t))s)" "$([ -z "$ran" ]; echo $?)" "ran: $ran"

# 3. Changing one run recomputes only that run.
git_ add -A && git_ commit -qm "after sync" >/dev/null 2>&1
"$PYTHON" - "$EDITED" <<'PY' || die "could not edit params.yaml"
import sys, yaml
run = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))
params["runs"][run]["k"] = params["runs"][run]["k"] - 2
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
PY
planned_jobs B-dry-run-edited > "$WORK/B-dry-run-edited.jobs" || exit 2
jobs=$(cat "$WORK/B-dry-run-edited.jobs")
others=$(echo "$jobs" | grep -v "run=$EDITED\b" | grep -v '^report' | grep -v '^$' || true)
check "B: after editing runs.$EDITED, snakemake -n schedules only that run's jobs and the report" \
    "$([ -n "$jobs" ] && [ -z "$others" ]; echo $?)" "also: $(echo "$others" | tr '\n' ';' | head -c 400)"
t=$SECONDS
tool dvc repro > "$WORK/B-repro-edited.log" 2>&1 || check "B: dvc repro after the edit exits 0" 1 "$WORK/B-repro-edited.log"
ran=$(ran_stages "$WORK/B-repro-edited.log")
stray=""
for stage in $ran; do
    case "$stage" in
        *@"$EDITED") ;;
        *) [[ " $GLOBAL_STAGES " == *" $stage "* ]] || stray="$stray $stage" ;;
    esac
done
check "B: after editing runs.$EDITED, dvc repro runs only that run's stages ($((SECONDS - t))s)" \
    "$([[ " $ran " == *" train@$EDITED "* ]] && [ -z "$stray" ]; echo $?)" "ran: $ran"

say "done in $((SECONDS - START))s; logs in $WORK"
exit $FAILED
