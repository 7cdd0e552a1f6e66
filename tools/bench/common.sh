# Shared by the benchmark scripts (sourced; bash).

# crun 1.8 refuses hybrid cgroup hosts ("drop all controllers from
# cgroupv2"). On such a host the WHOLE calling script re-executes itself in a
# private mount namespace with /sys/fs/cgroup/unified unmounted (host mounts
# untouched), so the wrapper is outside every timed command and every
# command sees the same cgroup view (the v1 hierarchies). Call it as
# bench_hybrid_reexec "$0" "$@"; afterwards BENCH_HYBRID is 1 if it happened.
bench_hybrid_reexec() {
  if [ -z "${AIRLOCK_BENCH_INNER:-}" ] &&
     awk '$5 == "/sys/fs/cgroup/unified" { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    export AIRLOCK_BENCH_INNER=hybrid
    exec unshare --mount --propagation private -- \
      sh -c 'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "$@"
  fi
  BENCH_HYBRID=0
  [ "${AIRLOCK_BENCH_INNER:-}" = hybrid ] && BENCH_HYBRID=1
  return 0
}

# Runs a command once (30 s limit) and says whether it worked; its output is
# kept in $WORK and the tail shown on failure.
precheck() {  # name, command...
  local name=$1; shift
  local log="$WORK/precheck-${name//[^a-zA-Z0-9]/_}.log" rc=0
  timeout 30 "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" = 0 ] && return 0
  {
    echo "!!! PRE-CHECK FAILED: $name (exit $rc) — left out of the comparison"
    echo "!!!   command: $*"
    sed 's/^/!!!   | /' "$log" | tail -n 8
  } >&2
  return 1
}
