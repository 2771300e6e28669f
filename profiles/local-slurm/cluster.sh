#!/usr/bin/env bash
# A single-node SLURM on this machine, for the SLURM tests and for trying the cluster path
# locally: `cluster.sh install | start | stop | status`.
#
# install: Debian's munge, slurmctld, slurmd and slurm-client (needs root and apt).
# start:   writes /etc/slurm/slurm.conf (select/cons_tres, proctrack/linuxproc, task/none,
#          no accounting: no slurmdbd, so job status comes from squeue) and gres.conf with
#          two fake GPUs (`Name=gpu` on the character devices /dev/null and /dev/zero), starts
#          munged, slurmctld and slurmd, and resumes the node, so `srun --gpus=1` runs
#          with CUDA_VISIBLE_DEVICES set.
# stop:    stops the three daemons.
# The partition is called `debug`; profiles/local-slurm/config.yaml points at it.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm

die() { echo "cluster.sh: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it writes $CONF_DIR and starts daemons)"; }

install() {
    need_root
    command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
    cat > "$CONF_DIR/slurm.conf" <<CONF
# written by profiles/local-slurm/cluster.sh
ClusterName=gdmd-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120): short here, for the tests
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    cat > "$CONF_DIR/gres.conf" <<CONF
# two fake GPUs: any existing character device will do
Name=gpu File=/dev/null
Name=gpu File=/dev/zero
CONF
}

start_munge() {
    [ -f /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || /usr/sbin/create-munge-key -f; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "munged did not come up"
}

start() {
    need_root
    command -v slurmctld >/dev/null || die "SLURM is not installed: run '$0 install' first"
    stop >/dev/null 2>&1 || true
    write_config
    start_munge
    slurmctld
    slurmd
    local host
    host=$(hostname -s)
    for _ in $(seq 100); do
        if sinfo -h -n "$host" -o %T 2>/dev/null | grep -qE "idle|mix|alloc|down|drain"; then break; fi
        sleep 0.2
    done
    # a changed config leaves the node down or drained: resume it
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        sinfo -h -n "$host" -o %T 2>/dev/null | grep -qE "^(idle|mix|alloc)" && { status; return 0; }
        sleep 0.2
    done
    status
    die "node $host did not become idle (see $LOG_DIR)"
}

stop() {
    for d in slurmd slurmctld; do
        pkill -x "$d" 2>/dev/null || true
    done
    # a controller still shutting down holds its port: wait for it (15 s), then kill it
    for _ in $(seq 150); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.1; done
    for d in slurmd slurmctld; do
        pkill -9 -x "$d" 2>/dev/null || true
    done
    # and for munged: start_munge must not mistake a dying munged for a running one
    pkill -x munged 2>/dev/null || true
    for _ in $(seq 50); do pgrep -x munged >/dev/null || break; sleep 0.1; done
    pkill -9 -x munged 2>/dev/null || true
}

status() {
    sinfo -N -o "%N %T %C %G" 2>/dev/null || echo "slurmctld not reachable"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 install|start|stop|status" ;;
esac
