#!/usr/bin/env bash
# Stop the one-node cluster that scripts/slurm/setup.sh started: slurmd, slurmctld and slurmdbd
# (by their pid files), and munged and MariaDB only if setup.sh was the one that started them.
# Queued and running jobs are cancelled first.
#
# --purge also removes what setup.sh wrote: /etc/slurm/{slurm,gres,slurmdbd}.conf, the
# controller's state, the logs and the accounting database (the packages stay installed).
set -euo pipefail

RUN=/run/slurm
ETC=/etc/slurm
MARK="# Written by msae scripts/slurm/setup.sh"
PURGE=0
case "${1:-}" in
    --purge) PURGE=1 ;;
    "") ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "slurm teardown: run as root" >&2; exit 1; }

stop() {
    local pidfile=$RUN/$1.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && { echo "slurm teardown: $1 (pid $pid) did not stop" >&2; exit 1; }
        echo "stopped $1 (pid $pid)"
    fi
    rm -f "$pidfile"
}

if [ -f "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
    scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
fi
for daemon in slurmd slurmctld slurmdbd; do stop "$daemon"; done

if [ "$PURGE" = 1 ]; then
    if mariadb-admin ping >/dev/null 2>&1; then
        mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db; DROP USER IF EXISTS 'slurm'@'localhost';"
    else
        echo "MariaDB is not running: the database slurm_acct_db was kept" >&2
    fi
fi

if [ -f "$RUN/started-services" ]; then
    for service in $(sort -u "$RUN/started-services"); do
        "/etc/init.d/$service" stop >/dev/null && echo "stopped $service"
    done
    rm -f "$RUN/started-services"
fi

if [ "$PURGE" = 1 ]; then
    for conf in slurm.conf gres.conf slurmdbd.conf; do
        if [ -f "$ETC/$conf" ] && grep -qF "$MARK" "$ETC/$conf"; then rm -f "$ETC/$conf"; fi
    done
    rm -rf /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm "$RUN"/fake-gpu*
    echo "purged the cluster's configuration, state and logs"
fi
