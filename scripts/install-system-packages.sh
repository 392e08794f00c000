#!/usr/bin/env bash
# Debian/Ubuntu packages dlcwatch needs on the machine:
#   ffmpeg (ffprobe decides what a video is), rsync + openssh-client (results to another machine).
# With --for-tests also what the tests run for real on 127.0.0.1: an sshd, and a single-node SLURM
# (slurmctld, slurmd, munge; slurmdbd + MariaDB for accounting), a single-node Grid Engine
# (gridengine-master/-exec/-client: Son of Grid Engine 8.1.9), and a headless Chromium with its
# driver for the web page's browser tests.
set -euo pipefail
packages="ffmpeg rsync openssh-client"
[ "${1:-}" = "--for-tests" ] && packages="$packages openssh-server slurmctld slurmd slurm-client munge slurmdbd mariadb-server gridengine-master gridengine-exec gridengine-client chromium chromium-driver"
need=""
for package in $packages; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || need="$need $package"
done
if [ -n "$need" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Grid Engine's packages would ask for a cell and a master host and set up a cluster of their own;
  # the tests build theirs in a temporary folder (tests/sge_cluster.sh), so they make none.
  printf '%s\n' 'gridengine-common shared/gridengineconfig boolean false' \
                'gridengine-common shared/gridenginecell string default' | $sudo debconf-set-selections
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $need >/dev/null
fi
