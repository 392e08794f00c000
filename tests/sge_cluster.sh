#!/usr/bin/env bash
# A throw-away single-node Son of Grid Engine 8.1.9 for the tests: sge_qmaster + sge_execd from
# Debian's packages, no systemd, classic flat-file spooling in $SGE_PREFIX. Run as root.
# (Worked out from ../shared/sge/start-local-sge.sh and NOTES.md, which record why each step is needed.)
#
#   tests/sge_cluster.sh start      install what is missing, wipe $SGE_PREFIX, start both daemons
#   tests/sge_cluster.sh stop       stop the execd with its jobs (qconf -kej), then the qmaster
#
# Settings (environment):
#   SGE_PREFIX        SGE_ROOT, spool, config and logs      (default ${TMPDIR:-/tmp}/dlcwatch-sge)
#   SGE_QMASTER_PORT  qmaster port; the execd uses the next one (default 16444)
#   SGE_SLOTS         slots of the one queue all.q; more than the machine's cores lets tiny test
#                     jobs run side by side (default 8)
#   FAKE_GPUS         consumable complex `gpu` on the host, so -l gpu=1 schedules (default 2; 0: none)
#   MAX_ARRAY_SIZE    the cluster's max_aj_tasks (default 75000, Grid Engine's own)
# The host is known to Grid Engine as "localhost": Debian resolves the real hostname to 127.0.0.1
# but 127.0.0.1 back to localhost, and Grid Engine refuses a client whose names differ unless
# host_aliases joins them. Jobs run in a plain (not login) shell: root's profile here runs
# `pyenv rehash`, whose lock a killed job leaves behind for every later one. Root may submit
# (min_uid 0), the scheduler runs every second and accounting is written at once, so qacct knows
# a job 0.1 s after qstat forgets it.
# `start` ends by printing the environment the clients need (also in $SGE_PREFIX/env). Exit code 3
# means the packages could not be installed (not root, no apt-get): callers skip, not fail.
set -euo pipefail
P=${SGE_PREFIX:-${TMPDIR:-/tmp}/dlcwatch-sge}
export SGE_QMASTER_PORT=${SGE_QMASTER_PORT:-16444}
export SGE_EXECD_PORT=$((SGE_QMASTER_PORT + 1))
export SGE_ROOT=$P/root SGE_CELL=dlcwatch
SLOTS=${SGE_SLOTS:-8}
FAKE_GPUS=${FAKE_GPUS:-2}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-75000}
COMMON=$SGE_ROOT/$SGE_CELL/common
QSPOOL=$P/spool/qmaster ESPOOL=$P/spool/execd
NODE=localhost

die() { echo "sge_cluster: $*" >&2; tail -n 20 "$QSPOOL/messages" "$ESPOOL"/*/messages "$P"/log/*.log >&2 2>/dev/null || true; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || die "timeout waiting for $what"; sleep 0.2; done
}
qc() { qconf "$@" >>"$P/log/qconf.log" 2>&1 || die "qconf $* failed"; }
pid_of() {  # pid_of PIDFILE PROGRAM: its pid if it runs (a zombie counts as gone: PID 1 reaps slowly here)
  local pid; [ -f "$1" ] || return 1; pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
    ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && echo "$pid"
}
gone_within() {  # gone_within PIDFILE PROGRAM TENTHS
  for _ in $(seq 1 "$3"); do pid_of "$1" "$2" >/dev/null || return 0; sleep 0.1; done; return 1
}

install() {
  local missing="" p
  for p in gridengine-master gridengine-exec gridengine-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "sge_cluster: cannot install$missing: needs root and apt-get" >&2; exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  # gridengineconfig=false: the packages make no cell of their own (no BerkeleyDB spool, no daemons)
  printf '%s\n' 'gridengine-common shared/gridengineconfig boolean false' \
                'gridengine-common shared/gridenginecell string default' | debconf-set-selections
  { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null; } ||
    { echo "sge_cluster: apt-get could not install$missing" >&2; exit 3; }
}

# A daemon gets a clean environment: sge_execd hands its own on to every job.
daemon() {
  (cd / && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" \
     SGE_QMASTER_PORT="$SGE_QMASTER_PORT" SGE_EXECD_PORT="$SGE_EXECD_PORT" setsid "/usr/sbin/$1" \
     </dev/null >>"$P/log/daemons.log" 2>&1) || die "$1 did not start"
}

start() {
  install
  [ "$(id -u)" = 0 ] || { echo "sge_cluster: must run as root" >&2; exit 3; }
  local host; host=$(hostname)
  getent hosts "$host" >/dev/null || die "hostname '$host' does not resolve; add '127.0.0.1 $host' to /etc/hosts"
  pid_of "$QSPOOL/qmaster.pid" sge_qmaster >/dev/null && die "already running (stop it first)"
  for port in $SGE_QMASTER_PORT $SGE_EXECD_PORT; do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && die "port $port is in use"
  done
  rm -rf "$P"
  mkdir -p "$SGE_ROOT"/{bin,lib,utilbin} "$COMMON" "$QSPOOL" "$ESPOOL" "$P"/{log,conf}
  chmod 755 "$P"
  local arch; arch=$(/usr/share/gridengine/util/arch)
  for d in bin lib utilbin; do ln -s /usr/lib/gridengine "$SGE_ROOT/$d/$arch"; done
  ln -s /usr/share/gridengine/util "$SGE_ROOT/util"

  cat > "$COMMON/bootstrap" <<EOF
admin_user              none
default_domain          none
ignore_fqdn             true
spooling_method         classic
spooling_lib            libspoolc
spooling_params         $COMMON;$QSPOOL
binary_path             $SGE_ROOT/bin
qmaster_spool_dir       $QSPOOL
security_mode           none
listener_threads        2
worker_threads          2
scheduler_threads       1
jvm_threads             0
EOF
  echo "$NODE" > "$COMMON/act_qmaster"
  local aliases; aliases=$(printf '%s\n' "$host" "$(hostname -s)" "$(hostname -f 2>/dev/null || true)" |
                           grep -v -e '^$' -e '^localhost$' | sort -u | tr '\n' ' ')
  echo "$NODE $aliases" > "$COMMON/host_aliases"
  sed -e "s|^execd_spool_dir .*|execd_spool_dir $ESPOOL|" -e "s|^mailer .*|mailer /bin/true|" \
      -e "s|^min_uid .*|min_uid 0|" -e "s|^min_gid .*|min_gid 0|" \
      -e "s|^max_aj_tasks .*|max_aj_tasks $MAX_ARRAY_SIZE|" -e "s|^login_shells .*|login_shells none|" \
      -e "s|^reporting_params .*|reporting_params accounting=true reporting=false flush_time=00:00:01 accounting_flush_time=00:00:00 joblog=false sharelog=00:00:00|" \
      /usr/share/gridengine/default-configuration > "$P/conf/global"
  (cd "$P" && /usr/lib/gridengine/spoolinit classic libspoolc "$COMMON;$QSPOOL" init &&
   /usr/lib/gridengine/spooldefaults configuration "$P/conf/global" &&
   /usr/lib/gridengine/spooldefaults complexes /usr/share/gridengine/util/resources/centry &&
   /usr/lib/gridengine/spooldefaults usersets /usr/share/gridengine/util/resources/usersets &&
   /usr/lib/gridengine/spooldefaults managers root) >"$P/log/init.log" 2>&1 || die "spool init failed"

  daemon sge_qmaster
  wait_for 60 sge_qmaster qconf -sh
  cd "$P/conf"
  qc -as "$NODE"
  # the scheduler every second, also right after a submit or a job's end; no load thresholds
  # (on a busy 2-core machine the load average would put the queue in alarm and hold jobs)
  sed -e "s/^schedd_job_info .*/schedd_job_info true/" -e "s/^job_load_adjustments .*/job_load_adjustments NONE/" \
      -e "s/^schedule_interval .*/schedule_interval 0:0:1/" -e "s/^flush_submit_sec .*/flush_submit_sec 1/" \
      -e "s/^flush_finish_sec .*/flush_finish_sec 1/" \
      /usr/share/gridengine/util/install_modules/inst_schedd_normal.conf > sched
  qc -Msconf sched
  local complex_values=NONE
  if [ "$FAKE_GPUS" -gt 0 ]; then
    qconf -sc > complexes
    echo "gpu gpu INT <= YES YES 0 0" >> complexes
    qc -Mc complexes
    complex_values="gpu=$FAKE_GPUS"
  fi
  printf '%s\n' "pe_name smp" "slots 999" "user_lists NONE" "xuser_lists NONE" "start_proc_args NONE" \
    "stop_proc_args NONE" 'allocation_rule $pe_slots' "control_slaves FALSE" "job_is_first_task TRUE" \
    "urgency_slots min" "accounting_summary FALSE" "qsort_args NONE" > pe
  qc -Ap pe
  printf '%s\n' "hostname $NODE" "load_scaling NONE" "complex_values $complex_values" "user_lists NONE" \
    "xuser_lists NONE" "projects NONE" "xprojects NONE" "usage_scaling NONE" "report_variables NONE" > exechost
  qc -Ae exechost
  printf 'group_name @allhosts\nhostlist %s\n' "$NODE" > hostgroup
  qc -Ahgrp hostgroup
  qconf -sq | sed -e "s/^qname .*/qname all.q/" -e "s/^hostlist .*/hostlist @allhosts/" \
                  -e "s/^load_thresholds .*/load_thresholds NONE/" -e "s/^pe_list .*/pe_list smp/" \
                  -e "s/^slots .*/slots $SLOTS/" > queue
  qc -Aq queue

  daemon sge_execd
  # up: the queue instance has a load report and no state flag (u: execd not heard from yet)
  queue_up() {
    local line; line=$(qstat -f -q all.q 2>/dev/null | grep "^all.q@$NODE ") || return 1
    [ "$(echo "$line" | awk '{print $4}')" != "-NA-" ] && [ "$(echo "$line" | awk '{print NF}')" -eq 5 ]
  }
  wait_for 60 "all.q@$NODE" queue_up
  echo "export SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL SGE_QMASTER_PORT=$SGE_QMASTER_PORT SGE_EXECD_PORT=$SGE_EXECD_PORT" > "$P/env"
  cat "$P/env"
  echo "sge ready"
}

stop() {
  local up=0 f pid
  pid_of "$QSPOOL/qmaster.pid" sge_qmaster >/dev/null && qstat >/dev/null 2>&1 && up=1
  for f in "$ESPOOL"/*/execd.pid; do
    pid=$(pid_of "$f" sge_execd) || continue
    [ $up = 1 ] && qconf -kej "$NODE" >/dev/null 2>&1   # kills its jobs too: they would outlive it
    gone_within "$f" sge_execd 100 || kill -KILL "$pid" 2>/dev/null || true
  done
  # a shepherd left by an execd that died without -kej: its cwd is in our spool
  for pid in $(pgrep -x sge_shepherd 2>/dev/null); do
    case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
      "$ESPOOL"/*) f=$(cat "/proc/$pid/cwd/job_pid" 2>/dev/null || true)
                   [ -n "$f" ] && kill -KILL -- "-$f" "$f" 2>/dev/null; kill -KILL "$pid" 2>/dev/null || true ;;
    esac
  done
  # SIGKILL, not qconf -km: a controlled shutdown takes 7-10 s, and start wipes the state anyway
  if pid=$(pid_of "$QSPOOL/qmaster.pid" sge_qmaster); then
    kill -KILL "$pid" 2>/dev/null || true
    gone_within "$QSPOOL/qmaster.pid" sge_qmaster 100 || die "sge_qmaster ($pid) did not stop"
  fi
  echo "sge stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
