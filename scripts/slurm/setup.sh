#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, with accounting, for running the pipeline through
# `snakemake --profile workflow/profiles/slurm` (see docs/scaleout.md).
#
# Installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server when missing (needs root),
# writes /etc/slurm/{slurm,slurmdbd,gres}.conf for this host, starts munged, MariaDB, slurmdbd,
# slurmctld and slurmd, and registers the cluster, an account and the current user in it.
# Accounting matters: the SLURM executor plugin learns that a job ended from `sacct`; without
# slurmdbd it only has `squeue`, which forgets finished jobs, and a run never ends.
#
# The node offers two partitions, `cpu` (default) and `gpu`, the names the profile uses. GPUs are
# declared as a generic resource: the real ones (/dev/nvidia*) when present, else
# MSAE_SLURM_GPUS stand-in GPUs (null devices), so that the torch rules' GPU requests are
# scheduled and accounted as on a GPU cluster (--gres=gpu:1, AllocTRES gres/gpu=1) while the
# jobs run on the CPU. One GPU, the default, also serialises the torch jobs as the local
# profile does.
#
# Environment: MSAE_SLURM_GPUS (stand-in GPUs when there are no real ones, default 1),
# MSAE_SLURM_MEM_MB (memory offered, default what `slurmd -C` finds less 2048 MB),
# MSAE_SLURM_ACCOUNT (default msae), MSAE_SLURM_CLUSTER (default msae), MSAE_SLURM_MEMORY_KILL
# (default 1: a job using more memory than it asked for is killed; 0 to measure).
# Re-running is safe: running daemons are kept, files this script did not write are refused.
set -euo pipefail

CLUSTER=${MSAE_SLURM_CLUSTER:-msae}
ACCOUNT=${MSAE_SLURM_ACCOUNT:-msae}
GPUS=${MSAE_SLURM_GPUS:-1}
USER_NAME=$(id -un)
HOST=$(hostname -s)
ETC=/etc/slurm
MARK="# Written by msae scripts/slurm/setup.sh"
STATE=/var/lib/slurm
LOGS=/var/log/slurm
RUN=/run/slurm
START=$SECONDS

say() { printf '[slurm setup %3ds] %s\n' $((SECONDS - START)) "$*"; }
die() { printf 'slurm setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: it installs packages, writes $ETC and starts daemons"

# Wait up to $1 seconds for the command "${@:2}" to succeed.
wait_for() {
    local limit=$1; shift
    local until=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$until" ] || return 1
        sleep 1
    done
}

# A config file is (re)written only when it is absent or ours; CHANGED says whether any changed.
CHANGED=0
write_config() {
    local path=$1 mode=$2 owner=$3 body
    body=$(cat)
    if [ -e "$path" ] && ! grep -qF "$MARK" "$path"; then
        die "$path exists and was not written by this script; move it away to use this cluster"
    fi
    printf '%s\n%s\n' "$MARK" "$body" > "$path.new"
    chmod "$mode" "$path.new"
    chown "$owner" "$path.new"
    cmp -s "$path.new" "$path" || CHANGED=1
    mv "$path.new" "$path"
}

packages=(slurm-wlm slurmdbd munge mariadb-server)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
fi
say "packages: $(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmdbd munge mariadb-server)"

# --- munge: authentication between the daemons and the client commands.
if ! munge -n </dev/null >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge: /etc/munge/munge.key; }
    /etc/init.d/munge start >/dev/null
    mkdir -p "$RUN" && echo munge >> "$RUN/started-services"
    wait_for 20 sh -c 'munge -n </dev/null | unmunge' || die "munged did not start (see /var/log/munge/munged.log)"
fi
say "munge up"

# --- MariaDB for slurmdbd.
if ! mariadb-admin ping >/dev/null 2>&1; then
    /etc/init.d/mariadb start >/dev/null
    mkdir -p "$RUN" && echo mariadb >> "$RUN/started-services"
    wait_for 60 mariadb-admin ping || die "MariaDB did not start (see /var/log/mysql/)"
fi
# The database password lives only in slurmdbd.conf (mode 600): reuse it on a re-run.
DB_PASS=""
if [ -f "$ETC/slurmdbd.conf" ]; then
    DB_PASS=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf")
fi
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
say "MariaDB up"

# --- configuration.
mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$RUN"
chown slurm: "$STATE/slurmctld" "$LOGS" "$RUN"

# This node as slurmd sees it (CPUs, sockets, cores, threads), with the memory it may hand out.
node_line=$(slurmd -C | head -n 1)
found_mb=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
MEM_MB=${MSAE_SLURM_MEM_MB:-$((found_mb - 2048))}
node_line=$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM_MB/" <<<"$node_line")

shopt -s nullglob
nvidia=(/dev/nvidia[0-9]*)
shopt -u nullglob
if [ ${#nvidia[@]} -gt 0 ]; then
    GPUS=${#nvidia[@]}
    gres_line="NodeName=$HOST Name=gpu File=/dev/nvidia[0-$((GPUS - 1))]"
    gpu_kind="$GPUS real GPU(s)"
else
    # Slurm 22.05's gpu plugin wants one device file per GPU (a bare Count is reported as 0):
    # stand-ins that are null devices under another name.
    for ((i = 0; i < GPUS; i++)); do
        [ -c "$RUN/fake-gpu$i" ] || { rm -f "$RUN/fake-gpu$i"; mknod -m 666 "$RUN/fake-gpu$i" c 1 3; }
    done
    gres_line="NodeName=$HOST Name=gpu File=$RUN/fake-gpu[0-$((GPUS - 1))]"
    gpu_kind="$GPUS stand-in GPU(s): GPU jobs run on the CPU"
fi

# MSAE_SLURM_MEMORY_KILL=0 lets jobs outgrow their mem_mb (to measure what they need).
if [ "${MSAE_SLURM_MEMORY_KILL:-1}" = 1 ]; then
    kill_line="JobAcctGatherParams=OverMemoryKill"
else
    kill_line="# JobAcctGatherParams=OverMemoryKill (off: MSAE_SLURM_MEMORY_KILL=0)"
fi

write_config "$ETC/slurm.conf" 644 root:root <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No cgroups on this machine: processes are tracked by parent id, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Cores and memory are consumable: jobs get what they ask for (mem_mb, cpus_per_task).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Accounting through slurmdbd: sacct answers for finished jobs, which the executor plugin needs.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# The plugin names each job's rule and wildcards in its comment: keep it for sacct.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
# Sample every second (short jobs would show no MaxRSS) and kill a job that outgrows its mem_mb,
# so a run here also proves the profile's memory requests are large enough.
JobAcctGatherFrequency=task=1
$kill_line
GresTypes=gpu
ReturnToService=2
$node_line Gres=gpu:$GPUS State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
CONF

write_config "$ETC/gres.conf" 644 root:root <<CONF
$gres_line
CONF

write_config "$ETC/slurmdbd.conf" 600 slurm:slurm <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
say "wrote $ETC/slurm.conf (node: $node_line; $gpu_kind), gres.conf, slurmdbd.conf"

# --- daemons, each only when not already running (restarted when their configuration changed).
running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
stop() {
    running "$1" || return 0
    local pid
    pid=$(cat "$RUN/$1.pid")
    kill "$pid"
    wait_for 30 sh -c "! kill -0 $pid" || die "$1 (pid $pid) did not stop"
}
if [ "$CHANGED" = 1 ]; then
    for daemon in slurmd slurmctld slurmdbd; do stop "$daemon"; done
fi

if ! running slurmdbd; then
    slurmdbd
    wait_for 60 sacctmgr -n show cluster || die "slurmdbd did not answer (see $LOGS/slurmdbd.log)"
fi
say "slurmdbd up"

# The cluster must be known to slurmdbd before slurmctld registers with it.
sacctmgr -n show cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n show account format=account | grep -qw "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="msae pipeline" organization=msae >/dev/null
# Root and, under sudo, the user who will submit the jobs.
users=$(printf '%s\n' "$USER_NAME" "${SUDO_USER:-}" | sort -u | xargs)
for user in $users; do
    sacctmgr -n show assoc where user="$user" account="$ACCOUNT" format=user | grep -qw "$user" \
        || sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null
done
say "account $ACCOUNT for $users on cluster $CLUSTER"

if ! running slurmctld; then
    slurmctld
    wait_for 60 scontrol ping || die "slurmctld did not answer (see $LOGS/slurmctld.log)"
fi
if ! running slurmd; then
    slurmd
fi
# A node drained by an earlier, wrong configuration stays drained: resume it once.
sleep 2
if sinfo -h -n "$HOST" -o %t | grep -Eq '^(drain|drng|inval)'; then
    scontrol update NodeName="$HOST" State=RESUME || true
fi
# The node is usable when it is idle (or already running jobs).
wait_for 60 sh -c "sinfo -h -n $HOST -o %t | grep -Eq '^(idle|mix|alloc)$'" \
    || die "node $HOST did not come up: $(sinfo -h -n "$HOST" -o '%t %E') (see $LOGS/slurmd.log)"
say "cluster up"
sinfo -o '%P %a %D %t %c %m %G'
