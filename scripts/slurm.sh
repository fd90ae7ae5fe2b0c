#!/usr/bin/env bash
# A throwaway single-host Slurm cluster for tests, all inside one dir.
#
#   scripts/slurm.sh start DIR   configure (first time) and start; prints DIR/env
#   scripts/slurm.sh stop DIR    cancel the cluster's jobs and stop; safe to repeat
#   scripts/slurm.sh env DIR     prints DIR/env of the cluster running in DIR
#
# One node (this host, as 127.0.0.1) with 8 CPUs, 16000 MB and 4 fake GPUs of
# type "fake": character devices DIR/dev/fakegpu0..3 (major 195, as NVIDIA's),
# so a --gres=gpu:N job sees CUDA_VISIBLE_DEVICES like on real GPUs.
# Partitions batch (default, PriorityTier 1), dev (5) and prod (10), with
# Slurm's partition-priority preemption (PreemptMode=REQUEUE). Jobs ending
# are logged to DIR/jobcomp.log (jobcomp/filetxt; no slurmdbd).
#
# Nothing global is touched: a private munged (key, socket and pid in
# DIR/munge) runs as user munge; slurmctld and slurmd read DIR/slurm.conf
# (SLURM_CONF) and listen on free ports picked at the first start; pid files,
# logs, state and spool live in DIR. Stopping kills by pid file only.
# DIR/env holds what tests need, one KEY=VALUE a line:
#   SLURM_CONF, SLURM_BIN_DIR, SLURM_NODE, SLURM_GPUS, SLURM_GPU_TYPE,
#   SLURM_PARTITIONS, SLURM_JOBCOMP
#
# Must run as root (slurmd runs jobs as their submitting user; mknod). Needs
# the Debian packages slurm-wlm and munge (bash scripts/setup.sh installs them).
set -euo pipefail

GPUS=4
GPU_TYPE=fake
CPUS=8
MEMORY_MB=16000

# The log whose tail explains a failure of the step now running, if any.
ERR_LOG=""

die() {
  echo "slurm.sh: error: $*" >&2
  if [[ -n "$ERR_LOG" && -s "$ERR_LOG" ]]; then
    echo "slurm.sh: --- last lines of $ERR_LOG ---" >&2
    tail -n 25 "$ERR_LOG" >&2 || true
  fi
  exit 1
}

usage() {
  echo "usage: scripts/slurm.sh start|stop|env DIR" >&2
  exit 2
}

(($# == 2)) || usage
CMD=$1
[[ -n "$2" ]] || usage
DIR=$(realpath -m -- "$2")
# The path goes into slurm.conf and a unix socket path (at most 107 bytes).
[[ "$DIR" =~ ^[A-Za-z0-9._/-]+$ ]] || die "DIR may only hold letters, digits and ._/- ($DIR)"
((${#DIR} + 20 <= 107)) || die "DIR path is too long for a unix socket ($DIR)"

BIN_DIR=$(dirname "$(command -v sbatch 2>/dev/null || echo /usr/bin/sbatch)")
SBIN_DIR=$(dirname "$(command -v slurmctld 2>/dev/null || echo /usr/sbin/slurmctld)")
MUNGED=$(command -v munged 2>/dev/null || echo /usr/sbin/munged)
export SLURM_CONF=$DIR/slurm.conf

# shellcheck source=lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ports.sh"

# Whether the pid in pid file $1 is alive and runs program $2.
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# Stops the process in pid file $1 (running $2): TERM, then KILL after 5 s.
stop_pid() {
  local pid i
  if alive "$1" "$2"; then
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      alive "$1" "$2" || break
      sleep 0.1
    done
    if alive "$1" "$2"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$1"
}

# Field $1 of `scontrol show node` for this node.
node_field() {
  "$BIN_DIR/scontrol" -o show node "$NODE" 2>/dev/null | grep -o " $1=[^ ]*" | cut -d= -f2
}

running() {
  alive "$DIR/munge/munged.pid" munged &&
    alive "$DIR/slurmctld.pid" slurmctld &&
    alive "$DIR/slurmd.pid" slurmd &&
    [[ -s "$DIR/env" ]]
}

print_env() {
  [[ -s "$DIR/env" ]] || die "$DIR/env is missing"
  cat "$DIR/env"
}

write_config() {
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [[ "$slurmd_port" == "$ctld_port" ]]; do slurmd_port=$(free_port); done
  cat >"$DIR/slurm.conf" <<EOF
# scripts/slurm.sh: throwaway single-host test cluster
ClusterName=kervantest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=300
SchedulerParameters=sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN
PartitionName=batch Nodes=$NODE Default=YES PriorityTier=1 MaxTime=INFINITE State=UP
PartitionName=dev Nodes=$NODE PriorityTier=5 MaxTime=INFINITE State=UP
PartitionName=prod Nodes=$NODE PriorityTier=10 MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/gres.conf" <<EOF
NodeName=$NODE Name=gpu Type=$GPU_TYPE File=$DIR/dev/fakegpu[0-$((GPUS - 1))]
EOF
}

start_munged() {
  if alive "$DIR/munge/munged.pid" munged; then
    return
  fi
  rm -f "$DIR/munge/munged.pid" "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
  if [[ ! -s "$DIR/munge/munge.key" ]]; then
    (umask 077 && dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none)
  fi
  chown -R munge:munge "$DIR/munge"
  chmod 0755 "$DIR/munge"
  chmod 0400 "$DIR/munge/munge.key"
  ERR_LOG=$DIR/munge/munged.log
  runuser -u munge -- "$MUNGED" --socket="$DIR/munge/munge.socket" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
    </dev/null >"$DIR/munge/start.out" 2>&1 ||
    die "munged did not start: $(cat "$DIR/munge/start.out")"
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -S "$DIR/munge/munge.socket" ]] && return
    sleep 0.1
  done
  die "munged did not create its socket"
}

start() {
  if running; then
    print_env
    return
  fi
  ((EUID == 0)) || die "must run as root (slurmd and mknod need it)"
  [[ -x "$SBIN_DIR/slurmctld" && -x "$SBIN_DIR/slurmd" && -x "$BIN_DIR/sbatch" ]] ||
    die "Slurm not found (bash scripts/setup.sh installs slurm-wlm)"
  [[ -x "$MUNGED" ]] || die "munged not found (bash scripts/setup.sh installs munge)"
  id munge >/dev/null 2>&1 || die "user munge does not exist (apt-get install munge)"

  # Whatever a previous, possibly unclean, run left running in DIR.
  stop_pid "$DIR/slurmd.pid" slurmd
  stop_pid "$DIR/slurmctld.pid" slurmctld

  mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/dev" || die "cannot create $DIR"
  chmod 0755 "$DIR"
  runuser -u munge -- test -x "$DIR" ||
    die "user munge cannot enter $DIR: a parent directory is not searchable by others" \
      "(e.g. /root is 0700); pick a DIR under /tmp or /var/tmp"
  local n
  for ((n = 0; n < GPUS; n++)); do
    if [[ ! -c "$DIR/dev/fakegpu$n" ]]; then
      rm -f "$DIR/dev/fakegpu$n"
      mknod "$DIR/dev/fakegpu$n" c 195 "$n" || die "mknod $DIR/dev/fakegpu$n failed"
    fi
  done
  [[ -s "$DIR/slurm.conf" ]] || write_config
  start_munged

  ERR_LOG=$DIR/slurmctld.log
  "$SBIN_DIR/slurmctld" -f "$DIR/slurm.conf" </dev/null >"$DIR/slurmctld.out" 2>&1 ||
    die "slurmctld did not start: $(cat "$DIR/slurmctld.out")"
  ERR_LOG=$DIR/slurmd.log
  # slurmctld remembers the node's last state: wait for this slurmd's registration.
  local started_at
  started_at=$(date +%Y-%m-%dT%H:%M:%S)
  "$SBIN_DIR/slurmd" -f "$DIR/slurm.conf" -N "$NODE" </dev/null >"$DIR/slurmd.out" 2>&1 ||
    die "slurmd did not start: $(cat "$DIR/slurmd.out")"

  local i state since resumed=0
  for ((i = 0; i < 300; i++)); do
    state=$(node_field State || true)
    since=$(node_field SlurmdStartTime || true)
    if [[ ! -s "$DIR/slurmd.pid" || ! -s "$DIR/slurmctld.pid" || ! -s "$DIR/munge/munged.pid" ||
      ! "$since" =~ ^[0-9] || "$since" < "$started_at" ]]; then
      state=registering
    fi
    case "$state" in
      IDLE | IDLE+* | MIXED* | ALLOCATED*)
        [[ "$state" != *DRAIN* ]] && break
        ;;
    esac
    # A node left down or drained by an earlier run comes back by hand.
    if [[ "$state" == *DOWN* || "$state" == *DRAIN* ]] && ((resumed == 0)) &&
      alive "$DIR/slurmd.pid" slurmd; then
      "$BIN_DIR/scontrol" update nodename="$NODE" state=resume >/dev/null 2>&1 || true
      resumed=1
    fi
    alive "$DIR/slurmctld.pid" slurmctld || {
      ERR_LOG=$DIR/slurmctld.log
      die "slurmctld exited"
    }
    sleep 0.1
  done
  if [[ ! "$state" =~ ^(IDLE|MIXED|ALLOCATED) || "$state" == *DRAIN* ]]; then
    ERR_LOG=$DIR/slurmd.log
    die "node $NODE did not become idle (state ${state:-unknown})"
  fi

  cat >"$DIR/env" <<EOF
SLURM_CONF=$DIR/slurm.conf
SLURM_BIN_DIR=$BIN_DIR
SLURM_NODE=$NODE
SLURM_GPUS=$GPUS
SLURM_GPU_TYPE=$GPU_TYPE
SLURM_PARTITIONS=batch,dev,prod
SLURM_JOBCOMP=$DIR/jobcomp.log
EOF
  echo "slurm.sh: Slurm running in $DIR (node $NODE, $GPUS GPUs, SLURM_CONF=$DIR/slurm.conf)" >&2
  print_env
}

stop() {
  if [[ ! -f "$DIR/slurm.conf" ]]; then
    echo "slurm.sh: no cluster in $DIR" >&2
    return
  fi
  # The cluster's own jobs first, so that no job step outlives slurmd.
  if alive "$DIR/slurmctld.pid" slurmctld; then
    local ids i
    ids=$("$BIN_DIR/squeue" -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [[ -n "${ids// /}" ]]; then
      # shellcheck disable=SC2086
      "$BIN_DIR/scancel" $ids >/dev/null 2>&1 || true
      for ((i = 0; i < 100; i++)); do
        [[ -z "$("$BIN_DIR/squeue" -h -o %A 2>/dev/null || true)" ]] && break
        sleep 0.1
      done
    fi
  fi
  stop_pid "$DIR/slurmd.pid" slurmd
  stop_pid "$DIR/slurmctld.pid" slurmctld
  stop_pid "$DIR/munge/munged.pid" munged
  echo "slurm.sh: stopped $DIR" >&2
}

NODE=$(hostname -s)
case "$CMD" in
  start) start ;;
  stop) stop ;;
  env)
    running || die "no cluster running in $DIR (scripts/slurm.sh start $DIR)"
    print_env
    ;;
  *) usage ;;
esac
