#!/usr/bin/env bash
# One-shot launch latency of `airlock run -- /bin/true` next to its peers
# (bubblewrap, crun, runc, unshare, plain /bin/true), all in ONE hyperfine
# invocation so they share the machine's conditions. Needs root.
#
#   tools/bench/run.sh           the comparison: medians and ratios vs bwrap
#   tools/bench/run.sh --steps   airlock's own per-step timings (50 runs of
#                                AIRLOCK_TIMINGS=1 airlock run -- /bin/true)
#
# Environment: AIRLOCK (default ./build/airlock), RUNS (300), WARMUP (20),
# STEP_RUNS (50), OUT (hyperfine JSON; default /tmp/airlock-bench-<time>.json),
# SECCOMP_PROFILE (default <repo>/seccomp-profiles/default.json).
#
# Fairness notes, printed with the results:
# - crun 1.8 refuses hybrid cgroup hosts ("drop all controllers from
#   cgroupv2"). On such a host the WHOLE script re-executes itself in a
#   private mount namespace with /sys/fs/cgroup/unified unmounted (host mounts
#   untouched), so the wrapper is outside every timed command and every
#   command sees the same cgroup view (the v1 hierarchies).
# - runc and crun delete a container's state when `run` returns (no --keep,
#   no --detach), so one container id serves all sequential runs: no id
#   wrapper, no extra process, zero overhead. A pre-check confirms it.
# - hyperfine runs with -N (no shell): no shell start-up inside the numbers.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
AIRLOCK=${AIRLOCK:-./build/airlock}
RUNS=${RUNS:-300}
WARMUP=${WARMUP:-20}
STEP_RUNS=${STEP_RUNS:-50}
OUT=${OUT:-/tmp/airlock-bench-$(date +%Y%m%d-%H%M%S).json}
SECCOMP_PROFILE=${SECCOMP_PROFILE:-$REPO/seccomp-profiles/default.json}
MODE=compare
case "${1:-}" in
  --steps) MODE=steps ;;
  "") ;;
  *) echo "usage: $0 [--steps]" >&2; exit 2 ;;
esac

die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (crun/runc with user namespaces and cgroups)"

# ---- hybrid cgroups: re-exec inside a private mount namespace (common.sh) ---
. "$HERE/common.sh"
bench_hybrid_reexec "$0" "$@"
CGROUP_NOTE="cgroup view: as the host has it"
if [ "$BENCH_HYBRID" = 1 ]; then
  CGROUP_NOTE="cgroup view: hybrid host; ALL commands ran in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun 1.8 refuses hybrid mode); v1 controllers as on the host"
fi

WORK=$(mktemp -d /tmp/airlock-bench.XXXXXX) || die "mktemp failed"
# The bundles' roots are reached by the containers' mapped (unprivileged) root.
chmod 755 "$WORK"
CG_PARENT=airlock-bench-$$
RUNC_ID=airlock-bench-runc-$$
CRUN_ID=airlock-bench-crun-$$
cleanup() {
  runc delete -f "$RUNC_ID" >/dev/null 2>&1
  crun delete -f "$CRUN_ID" >/dev/null 2>&1
  for d in /sys/fs/cgroup/*/"$CG_PARENT"; do
    [ -d "$d" ] && rmdir "$d"/* "$d" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT


# ---- --steps: airlock's per-step timings ------------------------------------
if [ "$MODE" = steps ]; then
  [ -x "$AIRLOCK" ] || die "airlock binary not found at $AIRLOCK (set AIRLOCK=)"
  echo "$CGROUP_NOTE"
  echo "airlock: $AIRLOCK run --memory 512M --pids 1024 -- /bin/true, $STEP_RUNS runs, AIRLOCK_TIMINGS=1"
  failed=0
  for i in $(seq -w 1 "$STEP_RUNS"); do
    if ! AIRLOCK_TIMINGS=1 "$AIRLOCK" run --memory 512M --pids 1024 -- /bin/true >/dev/null 2>"$WORK/run-$i.err"; then
      failed=$((failed + 1))
      [ "$failed" = 1 ] && { echo "!!! run $i failed:" >&2; tail -n 8 "$WORK/run-$i.err" >&2; }
    fi
  done
  [ "$failed" = 0 ] || echo "!!! $failed of $STEP_RUNS runs FAILED" >&2
  python3 "$HERE/report.py" steps "$WORK"
  rc=$?
  [ "$failed" = 0 ] && exit $rc
  exit 1
fi

# ---- the peers ---------------------------------------------------------------
command -v hyperfine >/dev/null || die "hyperfine not installed"
NAMES=() CMDS=()
CONFIGS=$WORK/configs.tsv
: >"$CONFIGS"
add() {  # name, configuration text, command...
  local name=$1 config=$2; shift 2
  if precheck "$name" "$@"; then
    NAMES+=("$name")
    local quoted="" a
    for a in "$@"; do quoted+="${quoted:+ }$(printf '%q' "$a")"; done
    CMDS+=("$quoted")
    printf '%s\t%s\n' "$name" "$config" >>"$CONFIGS"
  else
    printf '%s\t%s\n' "$name" "$config" >>"$WORK/failed.tsv"
  fi
}

add true "/bin/true, no isolation (the floor)" /bin/true

add unshare "unshare(1): user (root mapped to caller), pid, mount, net, uts, ipc namespaces; no pivot, no cgroup, no seccomp" \
  unshare --user --map-root-user --pid --fork --mount --net --uts --ipc /bin/true

add bwrap "bubblewrap: all namespaces (user, pid, net, ipc, uts, cgroup, mount), host /usr read-only, lib/bin symlinks, /proc, minimal /dev, tmpfs /tmp; no cgroup limits, no seccomp" \
  bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/lib /lib \
  --symlink usr/lib64 /lib64 --symlink usr/bin /bin --proc /proc --dev /dev --tmpfs /tmp /bin/true

# OCI bundles: the same config for both runtimes, except the cgroup path.
SECCOMP_NOTE=""
make_oci() {  # runtime, id, seccomp profile ("" = none)
  local rt=$1 id=$2 profile=$3
  rm -rf "$WORK/$rt"
  SECCOMP_NOTE=$(python3 "$HERE/make_bundle.py" "$WORK/$rt" --cgroups-path "/$CG_PARENT/$rt" \
    ${profile:+--seccomp "$profile"}) || return 1
  OCI_CMD=("$rt" run --bundle "$WORK/$rt" "$id")
}
OCI_DESC="user namespace (0 -> host 1000000, 65536 ids), pid/mount/net/uts/ipc namespaces, read-only rootfs with host /usr bound read-only + lib/bin symlinks, /proc, tmpfs /dev and /tmp, Docker default caps minus MKNOD/NET_RAW, no_new_privs, memory 512M + pids 1024 at cgroupsPath /$CG_PARENT/<runtime>"
for rt in crun runc; do
  id=$([ "$rt" = crun ] && echo "$CRUN_ID" || echo "$RUNC_ID")
  if ! command -v "$rt" >/dev/null; then
    echo "!!! $rt not installed — left out" >&2
    printf '%s\tnot installed\n' "$rt" >>"$WORK/failed.tsv"
    continue
  fi
  make_oci "$rt" "$id" "$SECCOMP_PROFILE" || { echo "!!! $rt bundle failed — left out" >&2; continue; }
  note=$SECCOMP_NOTE
  if ! timeout 30 "${OCI_CMD[@]}" >"$WORK/$rt-first.log" 2>&1; then
    if [ -f "$SECCOMP_PROFILE" ]; then
      echo "!!! $rt failed with the seccomp profile; trying it WITHOUT seccomp:" >&2
      sed 's/^/!!!   | /' "$WORK/$rt-first.log" | tail -n 4 >&2
      "$rt" delete -f "$id" >/dev/null 2>&1
      make_oci "$rt" "$id" "" || continue
      note="seccomp: NONE ($rt failed with $SECCOMP_PROFILE)"
    fi
  fi
  # add's pre-check is then a second run with the same id: it also proves
  # the runtime removed the container's state on exit.
  add "$rt" "$rt run: $OCI_DESC; $note" "${OCI_CMD[@]}"
done

if [ -x "$AIRLOCK" ]; then
  add airlock "airlock run --memory 512M --pids 1024: host image (overlay over idmapped layers, tmpfs upper), user/pid/mount/net/uts/ipc/cgroup/time namespaces, cgroup v1 memory+pids limits (init and work groups), seccomp default.json, Docker default caps minus MKNOD/NET_RAW, no_new_privs, /proc masks, airlock-init as PID 1" \
    "$AIRLOCK" run --memory 512M --pids 1024 -- /bin/true
else
  echo "!!! PRE-CHECK FAILED: airlock — no executable at $AIRLOCK (set AIRLOCK=) — left out" >&2
  printf 'airlock\tnot built at %s\n' "$AIRLOCK" >>"$WORK/failed.tsv"
fi

[ "${#NAMES[@]}" -gt 0 ] || die "every command failed its pre-check"

# ---- one hyperfine invocation -----------------------------------------------
ARGS=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT" --style basic)
for i in "${!NAMES[@]}"; do ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
echo "$CGROUP_NOTE"
echo "hyperfine ${ARGS[*]}"
echo
hyperfine "${ARGS[@]}" || die "hyperfine failed (a command failed during the timed runs?)"

echo
echo "=== medians, $RUNS runs each after $WARMUP warm-up runs; $(uname -r), $(nproc) CPUs ==="
python3 "$HERE/report.py" table "$OUT" "$CONFIGS" bwrap
echo "  $CGROUP_NOTE"
if [ -s "$WORK/failed.tsv" ]; then
  echo
  echo "!!! LEFT OUT (failed their pre-check, see above):"
  sed 's/^/!!!   /; s/\t/: /' "$WORK/failed.tsv"
fi
echo
echo "raw results: $OUT"
[ ! -s "$WORK/failed.tsv" ]
