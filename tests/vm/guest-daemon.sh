#!/bin/bash
# Guest script (tests/vm/run-guest.sh tests/vm/guest-daemon.sh): the daemon
# lane's pytest files against a real airlockd on a pure cgroup v2 kernel
# (Debian's 6.1) with CRIU, for the tests the host (6.18, hybrid cgroups)
# can't run, or runs differently: CRIU, and the zygote cloning into v2
# groups (CLONE_INTO_CGROUP). Runs the test files given as arguments
# (relative to the source dir), default tests/daemon/test_full_snapshots.py
# and tests/daemon/test_zygote.py; run-guest.sh passes none.
#
# Like guest-root-tests.sh, the tests start from a non-root cgroup,
# /sys/fs/cgroup/airlock.slice/airlock.service, with memory, pids and cpu
# enabled on the way down: airlockd moves itself into a leaf child of the
# cgroup it starts in and makes sandboxes that leaf's siblings (v2's "no
# internal processes" rule), which the root cgroup would not exercise.
# The test dir goes to /var/tmp (the root disk) rather than the guest's tmpfs
# /tmp: the daemon's pool image and CRIU's images would otherwise take guest
# RAM. It is kept (AIRLOCK_TEST_KEEP); on failure its logs and small files go
# to $AIRLOCK_OUT/daemon-tests.
# Exits 0 when pytest passed, 77 when CRIU can't run here, else 1 (pytest's
# 5, "no tests collected", included).
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=/dev/null
[ -f /airlock/.vm/config ] && . /airlock/.vm/config
out=${AIRLOCK_OUT:-/airlock/out}

echo "== guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB"
if ! command -v criu >/dev/null; then echo "SKIP: criu is not installed (tools/setup.sh --vm)"; exit 77; fi
criu --version | head -1
if ! criu check >/tmp/criu-check.log 2>&1; then
  echo "SKIP: criu check fails here:"; tail -3 /tmp/criu-check.log; exit 77
fi

# The copies at their original paths: the binaries carry those paths
# (AIRLOCK_BUILD_DIR, AIRLOCK_SOURCE_DIR); /airlock/* otherwise.
src=/airlock/src
[ -n "${HOST_SRC:-}" ] && [ -d "$HOST_SRC/tests/daemon" ] && src=$HOST_SRC
build=/airlock/build
[ -n "${HOST_BUILD:-}" ] && [ -x "$HOST_BUILD/airlockd" ] && build=$HOST_BUILD
cd "$src" || { echo "FAIL: cd $src"; exit 1; }
py=/usr/bin/python3
[ -x $py ] || py=python3

[ $# -gt 0 ] || set -- tests/daemon/test_full_snapshots.py tests/daemon/test_zygote.py
for f in "$@"; do
  case "${f%%::*}" in
    *.py) [ -f "${f%%::*}" ] || { echo "FAIL: no test file $src/${f%%::*}"; exit 1; } ;;
  esac
done

slice=/sys/fs/cgroup/airlock.slice
service=$slice/airlock.service
mkdir -p "$service" || { echo "FAIL: mkdir $service"; exit 1; }
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
echo "+memory +pids +cpu" > "$slice/cgroup.subtree_control" ||
  { echo "FAIL: enabling memory pids cpu in $slice"; exit 1; }
echo $$ > "$service/cgroup.procs" || { echo "FAIL: moving into $service"; exit 1; }
echo "== running from cgroup $(cut -d: -f3 /proc/self/cgroup); controllers there: $(cat "$service/cgroup.controllers")"

tmp=/var/tmp/airlock-guest-daemon
rm -rf "$tmp"
mkdir -p "$tmp" || { echo "FAIL: mkdir $tmp"; exit 1; }
echo "== pytest $* (AIRLOCK_BUILD=$build, in $src)"
start=$(date +%s)
AIRLOCK_BUILD=$build PYTHONDONTWRITEBYTECODE=1 AIRLOCK_TEST_KEEP=1 TMPDIR=$tmp \
  $py -m pytest -q -p no:cacheprovider -rs "$@"
r=$?
echo "== pytest exited $r after $(($(date +%s) - start)) s"

case $r in
  0) exit 0 ;;
  77) echo "SKIP: pytest says the daemon tests can't run here"; exit 77 ;;
  5) echo "FAIL: pytest collected no tests from $*" ;;
esac
# What the daemons wrote, for a look on the host: logs and state, not the
# pool image (sparse, gigabytes) or sockets.
for d in "$tmp"/airlock-daemon-tests-*; do
  [ -d "$d" ] || continue
  for log in "$d"/*.log; do
    [ -f "$log" ] || continue
    echo "---- last 30 lines of $log"
    tail -n 30 "$log"
  done
  if [ -d "$out" ]; then
    dest=$out/daemon-tests/$(basename "$d")
    mkdir -p "$dest" &&
      (cd "$d" && find . -type f -size -16M -not -path '*/images/*' -print0 |
        xargs -0r cp --parents -t "$dest") &&
      echo "== copied the logs and state of $d to \$AIRLOCK_OUT/daemon-tests/$(basename "$d")"
    # The pool (unmounted at the end of the session) holds the snapshots and
    # whatever logs were written next to them (CRIU's): *.log from it, read-only.
    # A pool still attached (a session that died) is read where it is mounted:
    # a second mount of the same btrfs through another loop device is refused.
    for img in "$d"/*-state/pool.img; do
      [ -f "$img" ] || continue
      mnt=$(dirname "$img")/pool ours=0
      if [ -z "$(losetup -j "$img")" ]; then
        mnt=$tmp/pool-mnt ours=1
        if ! mkdir -p "$mnt" || ! mount -t btrfs -o ro,loop "$img" "$mnt"; then continue; fi
      fi
      pdest=$dest/$(basename "$(dirname "$img")")-pool-logs
      mkdir -p "$pdest" &&
        (cd "$mnt" && find . -type f -name '*.log' -size -16M -print0 | xargs -0r cp --parents -t "$pdest")
      echo "== pool $img: $(find "$pdest" -type f | wc -l) *.log files copied"
      [ $ours = 0 ] || umount "$mnt"
    done
  fi
done
exit 1
