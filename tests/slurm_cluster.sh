#!/usr/bin/env bash
# A throw-away single-node SLURM for the tests: slurmctld + slurmd + munge (+ slurmdbd and a private
# MariaDB with WITH_ACCOUNTING=1) from Debian packages, no systemd. Run as root.
#
#   tests/slurm_cluster.sh start          install what is missing, wipe $SLURM_PREFIX, start the daemons
#   tests/slurm_cluster.sh stop           cancel every job, then stop the daemons by their pid files
#   tests/slurm_cluster.sh ctld-stop      stop only slurmctld (a controller outage; jobs keep running)
#   tests/slurm_cluster.sh ctld-start     start slurmctld again on its saved state
#   tests/slurm_cluster.sh dbd-stop       stop only slurmdbd (accounting down: sacct fails)
#   tests/slurm_cluster.sh dbd-start      start slurmdbd again
#
# Settings (environment):
#   SLURM_PREFIX     state, config and logs    (default ${TMPDIR:-/tmp}/dlcwatch-slurm)
#   SLURM_PORT       first of four TCP ports: slurmctld, slurmd, slurmdbd, mariadb (default 16817)
#   FAKE_GPUS        fake gres/gpu on the node, so --gres=gpu:1 schedules (default 2; 0: no GRES)
#   WITH_ACCOUNTING  1: MariaDB + slurmdbd, so sacct works (default 0)
#   ENFORCE          with accounting: AccountingStorageEnforce (e.g. limits), so association
#                    limits set with sacctmgr (MaxSubmitJobs) are enforced (default: none)
#   SLURM_CPUS       CPUs the node declares (default: what slurmd -C finds); more than the machine
#                    has lets tiny test jobs run side by side on a 2-core box
#   MIN_JOB_AGE      seconds slurmctld remembers an ended job (default 3600)
#   MAX_ARRAY_SIZE   MaxArraySize (default 1001, SLURM's own default)
#   MESSAGE_TIMEOUT  MessageTimeout (default 10, SLURM's); a command gives up on a stopped controller
#                    after about MESSAGE_TIMEOUT - 1 seconds
# `start` ends by printing SLURM_CONF=... (also written to $SLURM_PREFIX/env). Exit code 3 means
# the packages could not be installed (not root, no apt-get, no network): callers skip, not fail.
set -euo pipefail
P=${SLURM_PREFIX:-${TMPDIR:-/tmp}/dlcwatch-slurm}
PORT=${SLURM_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
FAKE_GPUS=${FAKE_GPUS:-2}
WITH_ACCOUNTING=${WITH_ACCOUNTING:-0}
MIN_JOB_AGE=${MIN_JOB_AGE:-3600}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-1001}
MESSAGE_TIMEOUT=${MESSAGE_TIMEOUT:-10}
export SLURM_CONF=$P/etc/slurm.conf

die() { echo "slurm_cluster: $*" >&2; tail -n 20 "$P"/log/*.log >&2 2>/dev/null || true; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || die "timeout waiting for $what"; sleep 0.2; done
}
alive() {  # alive NAME: the daemon in $P/pid/NAME.pid runs (and is that program, not a recycled pid)
  local f="$P/pid/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
stop_daemons() {  # stop_daemons NAME...: TERM them all, wait up to 10 s for all, then KILL what is left
  local name pid pids=() names=()
  for name in "$@"; do
    if alive "$name"; then
      pid=$(cat "$P/pid/$name.pid"); kill -TERM "$pid"; pids+=("$pid"); names+=("$name ($pid)")
    fi
    rm -f "$P/pid/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local left
  for _ in $(seq 1 100); do
    left=0; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break; sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done
  echo "stopped ${names[*]}"
}

install_packages() {
  local pkgs="slurmctld slurmd slurm-client munge" missing="" p
  [ "$WITH_ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "slurm_cluster: cannot install$missing: needs root and apt-get" >&2; exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
         apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "slurm_cluster: apt-get could not install$missing" >&2; exit 3
  fi
}

start_controller() {
  slurmctld
  wait_for 60 slurmctld sh -c 'scontrol ping | grep -q "is UP"'
}

start() {
  [ "$(id -u)" = 0 ] || { echo "slurm_cluster: must run as root" >&2; exit 3; }
  install_packages
  alive slurmctld && die "already running in $P (run '$0 stop' first)"
  rm -rf "$P"
  mkdir -p "$P"/{etc,state/ctld,state/d,log,pid,munge,munge-key,fakegpu}
  chmod 755 "$P"
  runuser -u munge -- test -x "$P/munge" ||
    die "the munge user cannot enter $P: choose a SLURM_PREFIX whose parent folders everyone may enter"

  # munge with a private key and socket
  mungekey -c -k "$P/munge-key/munge.key"
  chown -R munge:munge "$P/munge" "$P/munge-key"
  chmod 700 "$P/munge-key"; chmod 755 "$P/munge"
  runuser -u munge -- munged -S "$P/munge/munge.socket" --key-file="$P/munge-key/munge.key" \
    --log-file="$P/munge/munged.log" --pid-file="$P/munge/munged.pid" --seed-file="$P/munge-key/seed"
  ln -s ../munge/munged.pid "$P/pid/munged.pid"
  wait_for 10 munged sh -c "munge -n -S '$P/munge/munge.socket' | unmunge -S '$P/munge/munge.socket'"

  # slurm.conf
  local node hw mem gres_node="" gres_types="" overrides="" acct i
  node=$(hostname -s)
  hw=$(env -u SLURM_CONF slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//')
  mem=$(env -u SLURM_CONF slurmd -C | head -n1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/')
  mem=$((mem * 9 / 10))
  if [ -n "${SLURM_CPUS:-}" ]; then
    hw="CPUs=$SLURM_CPUS"; overrides="SlurmdParameters=config_overrides"
  fi
  if [ "$FAKE_GPUS" -gt 0 ]; then
    gres_types="GresTypes=gpu"; gres_node="Gres=gpu:$FAKE_GPUS"
    echo "AutoDetect=off" > "$P/etc/gres.conf"
    for i in $(seq 0 $((FAKE_GPUS - 1))); do   # gres/gpu needs File=; char devices avoid an error
      mknod -m 666 "$P/fakegpu/gpu$i" c 1 3 2>/dev/null || touch "$P/fakegpu/gpu$i"
      echo "NodeName=$node Name=gpu File=$P/fakegpu/gpu$i" >> "$P/etc/gres.conf"
    done
  fi
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$P/munge/munge.socket
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux"
    [ -n "${ENFORCE:-}" ] && acct="$acct
AccountingStorageEnforce=$ENFORCE"
  else
    acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi
  cat > "$SLURM_CONF" <<EOF
ClusterName=localci
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$P/munge/munge.socket
StateSaveLocation=$P/state/ctld
SlurmdSpoolDir=$P/state/d
SlurmctldPidFile=$P/pid/slurmctld.pid
SlurmdPidFile=$P/pid/slurmd.pid
SlurmctldLogFile=$P/log/slurmctld.log
SlurmdLogFile=$P/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
MaxArraySize=$MAX_ARRAY_SIZE
MessageTimeout=$MESSAGE_TIMEOUT
KillWait=5
InactiveLimit=0
$overrides
$gres_types
NodeName=$node NodeAddr=127.0.0.1 $hw RealMemory=$mem $gres_node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
  echo "export SLURM_CONF=$SLURM_CONF" > "$P/env"

  # optional accounting: a private MariaDB on 127.0.0.1:$DB_PORT and slurmdbd
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    mkdir -p "$P/mysql"; chown mysql:mysql "$P/mysql"
    mariadb-install-db --no-defaults --user=mysql --datadir="$P/mysql/data" \
      --auth-root-authentication-method=socket > "$P/log/mariadb-install.log" 2>&1
    setsid mariadbd --no-defaults --user=mysql --datadir="$P/mysql/data" --socket="$P/mysql/mysqld.sock" \
      --pid-file="$P/mysql/mysqld.pid" --bind-address=127.0.0.1 --port=$DB_PORT \
      --log-error="$P/log/mariadb.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    echo $! > "$P/pid/mariadbd.pid"
    wait_for 30 mariadb mariadb --no-defaults -S "$P/mysql/mysqld.sock" -uroot -e 'select 1'
    mariadb --no-defaults -S "$P/mysql/mysqld.sock" -uroot -e "CREATE DATABASE slurm_acct_db;
      CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    cat > "$P/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$P/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$P/pid/slurmdbd.pid
LogFile=$P/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$P/etc/slurmdbd.conf"
    slurmdbd    # finds slurmdbd.conf next to $SLURM_CONF; daemonizes
    wait_for 60 slurmdbd grep -q 'slurmdbd version .* started' "$P/log/slurmdbd.log"
  fi

  # slurmctld, then slurmd (both daemonize and write pid files)
  start_controller
  slurmd
  wait_for 60 "node $node idle" sh -c "[ \"\$(sinfo -h -N -n $node -o %T | sort -u)\" = idle ]"
  # slurmctld's first scheduling pass comes ~3 s after start; jobs submitted before it wait for it
  wait_for 30 "first scheduler pass" grep -q 'SchedulerParameters=' "$P/log/slurmctld.log"
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    wait_for 30 "cluster in slurmdbd" sh -c 'sacctmgr -n -P show cluster format=cluster | grep -qx localci'
  fi
  echo "SLURM_CONF=$SLURM_CONF"
  echo "slurm ready"
}

stop() {
  if alive slurmctld; then   # end running jobs first: their slurmstepd outlive slurmd
    squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 1 50); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  stop_daemons slurmd slurmctld slurmdbd   # together: each takes about 2 s to end
  stop_daemons mariadbd munged
  echo "slurm stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  ctld-stop) stop_daemons slurmctld ;;
  ctld-start) alive slurmctld || start_controller; echo "slurmctld running" ;;
  dbd-stop) stop_daemons slurmdbd ;;
  dbd-start) alive slurmdbd || { slurmdbd; wait_for 60 slurmdbd sacct -n -X -j 1; }; echo "slurmdbd running" ;;
  *) echo "usage: $0 start|stop|ctld-stop|ctld-start|dbd-stop|dbd-start" >&2; exit 64 ;;
esac
