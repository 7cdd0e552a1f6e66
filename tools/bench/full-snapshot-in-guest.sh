#!/bin/bash
# Guest script for the full-snapshot benchmark (tools/bench/full_snapshot.py):
#   tests/vm/run-guest.sh tools/bench/full-snapshot-in-guest.sh
# airlockd runs from a delegated cgroup, as under systemd (guest-daemon.sh).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
[ -f /airlock/.vm/config ] && . /airlock/.vm/config
src=${HOST_SRC:-/airlock/src}
build=${HOST_BUILD:-/airlock/build}
[ -d "$src" ] || src=/airlock/src
[ -d "$build" ] || build=/airlock/build
slice=/sys/fs/cgroup/airlock.slice
mkdir -p "$slice/airlock.service"
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
echo "+memory +pids +cpu" > "$slice/cgroup.subtree_control"
echo $$ > "$slice/airlock.service/cgroup.procs"
PYTHONDONTWRITEBYTECODE=1 exec /usr/bin/python3 "$src/tools/bench/full_snapshot.py" --build "$build" --runs "${RUNS:-3}"
