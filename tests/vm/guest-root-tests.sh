#!/bin/bash
# Guest script (tests/vm/run-guest.sh tests/vm/guest-root-tests.sh): the root
# and security lanes on a pure cgroup v2 kernel (Debian's 6.1), started the way
# a daemon under systemd would be: from a non-root cgroup,
# /sys/fs/cgroup/airlock.slice/airlock.service, with memory, pids and cpu
# enabled on the way down (as systemd's Delegate=yes leaves it: the service's
# own subtree_control is the runtime's business).
# Exits 0 when every test binary passed, 77 when none could run, else 1.
set -u
build=${AIRLOCK_BUILD:-/airlock/build}

echo "== guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB"
slice=/sys/fs/cgroup/airlock.slice
service=$slice/airlock.service
mkdir -p "$service" || { echo "FAIL: mkdir $service"; exit 1; }
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
echo "+memory +pids +cpu" > "$slice/cgroup.subtree_control" ||
  { echo "FAIL: enabling memory pids cpu in $slice"; exit 1; }
echo $$ > "$service/cgroup.procs" || { echo "FAIL: moving into $service"; exit 1; }
echo "== running from cgroup $(cut -d: -f3 /proc/self/cgroup); controllers there: $(cat "$service/cgroup.controllers")"
mkdir -p /var/lib/airlock

# The guest has no network (-nic none): the recipe builds, which need the
# Debian mirror, are the host root lane's (the 600-layer image still runs here).
export AIRLOCK_SKIP_RECIPE_TESTS=1

ran=0 rc=0
for t in root_tests security_tests; do
  bin=$build/tests/$t
  [ -x "$bin" ] || bin=$build/$t
  if [ ! -x "$bin" ]; then
    echo "== $t: not built (no $build/tests/$t), skipped"
    continue
  fi
  echo "== $t"
  start=$(date +%s)
  "$bin" -r compact -d yes
  r=$?
  echo "== $t exited $r after $(($(date +%s) - start)) s"
  case $r in
    0) ran=$((ran + 1)) ;;
    77) ;;  # the binary's own SKIP: line says why
    *) ran=$((ran + 1)); rc=1 ;;
  esac
done
# What the tests (or the runtime's own leaf for its process) left behind.
left=$(find "$service" -mindepth 1 -type d 2>/dev/null)
[ -z "$left" ] || echo "== cgroups present under $service after the tests:"$'\n'"$left"
[ $ran -gt 0 ] || { echo "SKIP: no test binary ran"; exit 77; }
exit $rc
