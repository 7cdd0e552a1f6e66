#!/usr/bin/env bash
# airlockd's benchmarks: a command in a RUNNING sandbox through the API, next
# to its peers (crun exec, runc exec, nsenter -a); create-to-first-exec and
# create/exec/destroy throughput; what an idle sandbox costs, and that many
# of them stay responsive and leave nothing behind. Needs root. Not run in CI;
# nothing here asserts a timing.
#
#   tools/bench/daemon.sh [exec] [cold] [idle]     (default: all three)
#
#   exec  `true` in a running sandbox: daemon_bench times unary Run and the
#         bidi Exec stream in-process over one persistent connection (before
#         AND after the hyperfine run, to show drift); ONE hyperfine -N
#         invocation times the peers: crun exec, runc exec (running
#         containers whose process is `sleep infinity`), nsenter -a into the
#         airlock sandbox's init and into the crun container, the `airlock
#         exec` CLI, /bin/true. Ratios are against `crun exec`.
#   cold  Create + first Run(true) over COLD_RUNS cold creates (each
#         destroyed), then create/exec/destroy cycles per second with
#         THREADS client threads (each its own connection).
#   idle  IDLE_COUNT idle sandboxes: PSS of each one's processes (init and
#         spawner, found by cgroup), airlockd's own RSS, Run(true) in every
#         one while all exist, then destroy all and check no cgroup, mount,
#         descriptor or record is left.
#
# Environment: BUILD (./build: airlockd, airlock-init, daemon_bench, and
# airlock + airlock-remote if built), RUNS (300), WARMUP (20), COLD_RUNS (50),
# CYCLES (50 per thread), THREADS (1,2), IDLE_COUNT (500), OUT (hyperfine
# JSON; default /tmp/airlock-daemon-bench-<time>.json), SECCOMP_PROFILE,
# DAEMON_ARGS (more airlockd options, e.g. --no-zygote), AIRLOCKD_TIMINGS=1
# (airlockd's per-step launch timings, as medians at the end).
#
# Set-up, printed with the results:
# - airlockd runs with a private --state-dir and socket under a temporary
#   directory, in private cgroups (abench-d-<pid>, beneath the cgroup this
#   script runs in, per v1 controller), so its sandboxes' groups are easy to
#   find and to check for leaks. It is stopped at the end.
# - crun 1.8 refuses hybrid cgroup hosts: as in run.sh, the WHOLE script
#   (airlockd included) re-executes in a private mount namespace with
#   /sys/fs/cgroup/unified unmounted.
# - The airlock sandboxes and the OCI containers get the same limits
#   (memory 512M, pids 1024) and seccomp profile (default.json).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-./build}
RUNS=${RUNS:-300}
WARMUP=${WARMUP:-20}
COLD_RUNS=${COLD_RUNS:-50}
CYCLES=${CYCLES:-50}
THREADS=${THREADS:-1,2}
IDLE_COUNT=${IDLE_COUNT:-500}
OUT=${OUT:-/tmp/airlock-daemon-bench-$(date +%Y%m%d-%H%M%S).json}
SECCOMP_PROFILE=${SECCOMP_PROFILE:-$REPO/seccomp-profiles/default.json}

SECTIONS=()
for a in "$@"; do
  case "$a" in
    exec|cold|idle) SECTIONS+=("$a") ;;
    *) echo "usage: $0 [exec] [cold] [idle]" >&2; exit 2 ;;
  esac
done
[ "${#SECTIONS[@]}" -gt 0 ] || SECTIONS=(exec cold idle)
want() { local s; for s in "${SECTIONS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

die() { echo "daemon.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (airlockd, crun/runc, nsenter)"
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory (set BUILD=)"
for b in airlockd airlock-init daemon_bench; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing (set BUILD=; cmake --build ... --target $b)"
done
BENCH=$BUILD/daemon_bench

# ---- hybrid cgroups: re-exec inside a private mount namespace (common.sh) ----
. "$HERE/common.sh"
bench_hybrid_reexec "$0" "$@"
CGROUP_NOTE="cgroup view: as the host has it"
if [ "$BENCH_HYBRID" = 1 ]; then
  CGROUP_NOTE="cgroup view: hybrid host; the whole script (airlockd, crun, runc, nsenter alike) ran in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun 1.8 refuses hybrid mode); v1 controllers as on the host"
fi

WORK=$(mktemp -d /tmp/airlock-daemon-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$WORK"  # the bundles' roots are reached by the containers' mapped root
STATE=$WORK/state
SOCK=$WORK/airlockd.sock
export AIRLOCK_SOCKET=$SOCK  # for the airlock CLI rows
DAEMON_CG=abench-d-$$        # not "airlock-*": that is airlock's stale-group pattern
OCI_CG=abench-oci-$$
CRUN_ID=abench-crun-$$
RUNC_ID=abench-runc-$$
DPID=""
EXEC_SB=""
CG_DIRS=()
FAILED=0

# The v1 mountpoint of a controller ("" if none).
cg_mount() {
  awk -v c="$1" '{
    for (i = 7; i <= NF; i++) if ($i == "-") { fs = $(i + 1); so = $(i + 3); break }
    if (fs == "cgroup") { n = split(so, o, ","); for (j = 1; j <= n; j++) if (o[j] == c) { print $5; exit } }
  }' /proc/self/mountinfo
}
# This process's path in a v1 controller's hierarchy.
cg_self() {
  awk -F: -v c="$1" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) { print $3; exit } }' /proc/self/cgroup
}

cleanup() {
  local d p
  [ -n "$EXEC_SB" ] && [ -n "$DPID" ] && "$BENCH" --socket "$SOCK" destroy "$EXEC_SB" >/dev/null 2>&1
  crun delete -f "$CRUN_ID" >/dev/null 2>&1
  runc delete -f "$RUNC_ID" >/dev/null 2>&1
  if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
    kill -TERM "$DPID"
    for _ in $(seq 50); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DPID" 2>/dev/null && { echo "!!! airlockd did not stop on SIGTERM; SIGKILL" >&2; kill -KILL "$DPID"; }
    wait "$DPID" 2>/dev/null
  fi
  # What is left in the daemon's groups is its keeper (it exits once no
  # daemon is connected and it holds nothing) or a leak: wait, then report.
  for d in "${CG_DIRS[@]}"; do
    # (cgroupfs files have size 0: read them, don't test -s)
    for _ in $(seq 50); do [ -n "$(cat "$d/cgroup.procs" 2>/dev/null)" ] || break; sleep 0.1; done
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
      echo "!!! pid $p ($(cat /proc/$p/comm 2>/dev/null)) still in $d after airlockd stopped; killing it" >&2
      kill -KILL "$p" 2>/dev/null
    done
    for p in "$d"/airlock-*; do
      [ -d "$p" ] || continue
      echo "!!! LEAK: sandbox cgroup $p left behind" >&2
      rmdir "$p"/* "$p" 2>/dev/null
    done
    for _ in $(seq 20); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
  done
  for d in /sys/fs/cgroup/*/"$OCI_CG"; do
    [ -d "$d" ] && rmdir "$d"/* "$d" 2>/dev/null
  done
  if grep -q " $WORK" /proc/self/mountinfo; then
    echo "!!! something is still mounted under $WORK; not removing it" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT


echo "=== airlockd benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC') ==="
echo "kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "airlock $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (uncommitted changes)'), build $BUILD"
echo "$CGROUP_NOTE"

# ---- airlockd, in private cgroups ---------------------------------------------
for ctl in pids memory cpu freezer; do
  mnt=$(cg_mount "$ctl")
  [ -n "$mnt" ] || continue
  self=$(cg_self "$ctl")
  d="$mnt${self%/}/$DAEMON_CG"
  # cpu and cpuacct may share one hierarchy under two names: make it once.
  case " ${CG_DIRS[*]-} " in *" $d "*) continue ;; esac
  mkdir "$d" || die "mkdir $d"
  CG_DIRS+=("$d")
done
[ "${#CG_DIRS[@]}" -gt 0 ] || echo "!!! no cgroup v1 hierarchy: airlockd runs in this script's cgroup" >&2
mkdir -p "$STATE"
DAEMON_CMD=("$BUILD/airlockd" --socket "$SOCK" --socket-mode 0666 --state-dir "$STATE"
            --max-sandboxes $((IDLE_COUNT + 16)) ${DAEMON_ARGS:-})
(
  for d in "${CG_DIRS[@]}"; do echo "$BASHPID" >"$d/cgroup.procs" || exit 1; done
  exec "${DAEMON_CMD[@]}"
) >"$WORK/airlockd.log" 2>&1 &
DPID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
if [ ! -S "$SOCK" ]; then
  sed 's/^/  | /' "$WORK/airlockd.log" >&2
  die "airlockd did not come up"
fi
echo "airlockd: ${DAEMON_CMD[*]}  (pid $DPID, cgroups ${CG_DIRS[*]-none})"
echo

# ---- 1. exec in a running sandbox --------------------------------------------
section_exec() {
  echo "=== 1. \`true\` in a running sandbox ==="
  command -v hyperfine >/dev/null || { FAILED=1; echo "!!! hyperfine not installed: exec section skipped" >&2; return; }
  EXEC_SB=$("$BENCH" --socket "$SOCK" create) || { FAILED=1; echo "!!! Create failed: exec section skipped" >&2; return; }
  local init_pid
  init_pid=$("$BENCH" --socket "$SOCK" init-pid "$EXEC_SB" --daemon-pid "$DPID") || init_pid=""
  echo "airlock sandbox $EXEC_SB (Create: host image, memory 512M, pids 1024, seccomp default), init pid $init_pid"

  local names=() cmds=() configs=$WORK/configs.tsv
  : >"$configs"
  add() {  # name, configuration, command...
    local name=$1 config=$2; shift 2
    if precheck "$name" "$@"; then
      local quoted="" a
      for a in "$@"; do quoted+="${quoted:+ }$(printf '%q' "$a")"; done
      names+=("$name"); cmds+=("$quoted")
      printf '%s\t%s\n' "$name" "$config" >>"$configs"
    else
      FAILED=1
    fi
  }

  add "/bin/true" "/bin/true on the host (the floor: one fork+exec)" /bin/true
  local rt id pid note
  for rt in crun runc; do
    id=$([ "$rt" = crun ] && echo "$CRUN_ID" || echo "$RUNC_ID")
    command -v "$rt" >/dev/null || { echo "!!! $rt not installed — left out" >&2; FAILED=1; continue; }
    note=$(python3 "$HERE/make_bundle.py" "$WORK/$rt" --cgroups-path "/$OCI_CG/$rt" \
             --seccomp "$SECCOMP_PROFILE" -- /usr/bin/sleep infinity) ||
      { echo "!!! $rt bundle failed — left out" >&2; FAILED=1; continue; }
    if ! timeout 30 "$rt" run --detach --bundle "$WORK/$rt" "$id" </dev/null >"$WORK/$rt-run.log" 2>&1; then
      echo "!!! $rt run --detach failed — left out:" >&2
      sed 's/^/!!!   | /' "$WORK/$rt-run.log" | tail -n 6 >&2
      FAILED=1
      continue
    fi
    pid=$("$rt" state "$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])')
    add "$rt exec" "$rt exec into a running container (\`$rt run --detach\` of a bundle running /usr/bin/sleep infinity): user namespace (0 -> host 1000000), pid/mount/net/uts/ipc namespaces, read-only rootfs + host /usr, Docker caps minus MKNOD/NET_RAW, no_new_privs, memory 512M + pids 1024; $note" \
      "$rt" exec "$id" true
    [ "$rt" = crun ] && [ -n "$pid" ] &&
      add "nsenter -a (crun ctr)" "nsenter -a -t <pid of the crun container's sleep> true: setns into its namespaces only (no cgroup, seccomp, caps)" \
        nsenter -a -t "$pid" true
  done
  if [ -n "$init_pid" ]; then
    add "nsenter -a (airlock sb)" "nsenter -a -t <host pid of the airlock sandbox's init> true: setns into its namespaces only (no cgroup, seccomp, caps)" \
      nsenter -a -t "$init_pid" true
  else
    echo "!!! no init pid for $EXEC_SB — nsenter into the airlock sandbox left out" >&2; FAILED=1
  fi
  if [ -x "$BUILD/airlock" ] && [ -x "$BUILD/airlock-remote" ]; then
    # The socket comes from AIRLOCK_SOCKET (exported above), so no `env`
    # process sits in the timed command.
    add "airlock exec (CLI)" "the airlock CLI as a process (AIRLOCK_SOCKET set): airlock execs airlock-remote, which connects to airlockd and runs the Exec stream" \
      "$BUILD/airlock" exec "$EXEC_SB" -- true
    add "airlock-remote exec (CLI)" "airlock-remote directly (the CLI without its exec hop)" \
      "$BUILD/airlock-remote" exec "$EXEC_SB" -- true
    add "airlock-remote --help" "airlock-remote's start-up alone (loads gRPC and protobuf, connects to nothing)" \
      "$BUILD/airlock-remote" --help
  else
    echo "!!! ================================================================" >&2
    echo "!!! airlock / airlock-remote not built in $BUILD: the CLI rows" >&2
    echo "!!! (airlock exec vs crun exec as processes) are LEFT OUT" >&2
    echo "!!! ================================================================" >&2
    FAILED=1
  fi

  echo
  echo "in-process, before hyperfine: $BENCH --socket $SOCK exec $EXEC_SB --runs $RUNS --warmup $WARMUP"
  "$BENCH" --socket "$SOCK" exec "$EXEC_SB" --runs "$RUNS" --warmup "$WARMUP" --tag before \
    --json "$WORK/api-before.json" || { FAILED=1; echo "!!! daemon_bench exec failed" >&2; }
  local args=(-N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT" --style basic)
  local i
  for i in "${!names[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
  echo
  printf 'hyperfine'; printf ' %q' "${args[@]}"; echo
  if [ "${#names[@]}" -gt 0 ]; then
    hyperfine "${args[@]}" >"${OUT%.json}.log" 2>&1 ||
      { FAILED=1; echo "!!! hyperfine failed:" >&2; tail -n 20 "${OUT%.json}.log" >&2; }
  fi
  echo
  echo "in-process, after hyperfine: (the same, --tag after)"
  "$BENCH" --socket "$SOCK" exec "$EXEC_SB" --runs "$RUNS" --warmup "$WARMUP" --tag after \
    --json "$WORK/api-after.json" || { FAILED=1; echo "!!! daemon_bench exec failed" >&2; }
  printf '%s\t%s\n' "api Run" "daemon_bench: unary Run(true) over one persistent gRPC connection, timed in-process; the command runs in the sandbox's workload cgroup, seccomp default, caps bounded, forked by the sandbox's spawner" >>"$configs"
  printf '%s\t%s\n' "api Exec stream" "daemon_bench: bidi Exec: start, read to the exit message, half-close, Finish" >>"$configs"
  printf '%s\t%s\n' "api Exec stream, WriteLast" "daemon_bench: bidi Exec with the start message half-closing the stream (WriteLast)" >>"$configs"

  echo
  echo "=== \`true\` in a running sandbox: $RUNS runs each after $WARMUP warm-up runs; $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) ==="
  python3 - "$configs" "$WORK/api-before.json" "$OUT" "$WORK/api-after.json" <<'EOF'
import json, os, sys
configs = {}
for line in open(sys.argv[1]):
    name, _, text = line.rstrip("\n").partition("\t")
    configs[name] = text
rows = []
for path in sys.argv[2:]:
    if os.path.exists(path):
        rows += json.load(open(path))["results"]
if not rows:
    sys.exit("no results")
def p90(r):
    t = sorted(r["times"])
    return t[min(len(t) - 1, int(len(t) * 0.9))] * 1e3
med = {r["command"]: r["median"] * 1e3 for r in rows}
base = med.get("crun exec")
w = max(len(r["command"]) for r in rows)
print(f"{'command':<{w}}  {'median':>7}  {'p90':>7}  {'mean ± σ':>15}  {'min':>6}  {'max':>7}  {'runs':>4}  {'× crun exec':>11}")
for r in rows:
    m = med[r["command"]]
    ratio = f"{m / base:11.2f}" if base else f"{'n/a':>11}"
    bad = [c for c in r.get("exit_codes", []) if c != 0]
    print(f"{r['command']:<{w}}  {m:7.3f}  {p90(r):7.3f}  {r['mean'] * 1e3:7.3f} ± {r['stddev'] * 1e3:5.3f}  "
          f"{r['min'] * 1e3:6.3f}  {r['max'] * 1e3:7.3f}  {len(r['times']):4d}  {ratio}"
          + (f"  ({len(bad)} runs failed)" if bad else ""))
print("(ms; api rows timed in-process by daemon_bench before and after the hyperfine run, the others by hyperfine -N)")
print()
print("targets (medians; not asserted):")
for tag in ("before", "after"):
    api = med.get(f"api Run ({tag})")
    if api is None:
        continue
    if base:
        print(f"  api Run ({tag}) <= 0.25 x crun exec: {api:.3f} vs {0.25 * base:.3f} ms -> "
              f"{'met' if api <= 0.25 * base else 'NOT MET'} ({api / base:.2f} x)")
    for ns in ("nsenter -a (airlock sb)", "nsenter -a (crun ctr)"):
        if ns in med:
            print(f"  api Run ({tag}) below {ns}: {api:.3f} vs {med[ns]:.3f} ms -> "
                  f"{'met' if api < med[ns] else 'NOT MET'}")
cli = med.get("airlock exec (CLI)")
if cli is not None and base:
    print(f"  airlock exec (CLI) vs crun exec (CLI): {cli:.3f} vs {base:.3f} ms ({cli / base:.2f} x)")
print()
print("configurations:")
seen = set()
for r in rows:
    key = r["command"].split(" (before)")[0].split(" (after)")[0]
    if key not in seen:
        seen.add(key)
        print(f"  {key}: {configs.get(key, '?')}")
EOF
  [ $? = 0 ] || FAILED=1
  echo "raw hyperfine results: $OUT (its output: ${OUT%.json}.log)"
  crun delete -f "$CRUN_ID" >/dev/null 2>&1
  runc delete -f "$RUNC_ID" >/dev/null 2>&1
  echo
}

# ---- 2. create to first exec; throughput --------------------------------------
section_cold() {
  echo "=== 2. create to first exec: $COLD_RUNS cold creates (each destroyed after); load $(cut -d' ' -f1-3 /proc/loadavg) ==="
  echo "$BENCH --socket $SOCK cold --runs $COLD_RUNS"
  "$BENCH" --socket "$SOCK" cold --runs "$COLD_RUNS" || { FAILED=1; echo "!!! daemon_bench cold failed" >&2; }
  echo
  echo "=== create/exec/destroy throughput: $CYCLES cycles per client thread; load $(cut -d' ' -f1-3 /proc/loadavg) ==="
  echo "$BENCH --socket $SOCK throughput --threads $THREADS --cycles $CYCLES"
  "$BENCH" --socket "$SOCK" throughput --threads "$THREADS" --cycles "$CYCLES" ||
    { FAILED=1; echo "!!! daemon_bench throughput failed" >&2; }
  echo
}

# ---- 3. idle sandboxes ----------------------------------------------------------
section_idle() {
  echo "=== 3. $IDLE_COUNT idle sandboxes; load $(cut -d' ' -f1-3 /proc/loadavg) ==="
  echo "$BENCH --socket $SOCK idle --count $IDLE_COUNT --daemon-pid $DPID"
  local t0 t1 records
  t0=$(date +%s.%N)
  "$BENCH" --socket "$SOCK" idle --count "$IDLE_COUNT" --daemon-pid "$DPID" ||
    { FAILED=1; echo "!!! daemon_bench idle failed or found a leak (see above)" >&2; }
  t1=$(date +%s.%N)
  records=$(find "$STATE/sandboxes" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "  sandbox records left in the state dir: $records (the exec section's sandbox, if it ran, is still alive: $([ -n "$EXEC_SB" ] && echo 1 || echo 0) expected)"
  echo "  the idle section took $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
}

want exec && section_exec
want cold && section_cold
want idle && section_idle

if ! kill -0 "$DPID" 2>/dev/null; then
  echo "!!! airlockd DIED during the run; its log:" >&2
  tail -n 30 "$WORK/airlockd.log" >&2
  FAILED=1
elif [ -s "$WORK/airlockd.log" ]; then
  if [ "${AIRLOCKD_TIMINGS:-}" = 1 ]; then
    # Each create's per-step timings (µs), as medians over all creates.
    echo "airlockd's per-step timings (AIRLOCKD_TIMINGS=1), median µs over every create:"
    awk '$1 == "airlockd-timing" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (!(kv[1] in seen)) { seen[kv[1]] = 1; order[++n] = kv[1] } v[kv[1]] = v[kv[1]] " " kv[2] } }
         END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }' "$WORK/airlockd.log" |
      python3 -c '
import statistics, sys
for line in sys.stdin:
    name, *vals = line.split()
    print(f"  {name:28s} {statistics.median(map(int, vals)):8.0f}  (n={len(vals)})")'
  fi
  echo "airlockd's log (last 10 lines):"
  tail -n 10 "$WORK/airlockd.log" | sed 's/^/  | /'
fi
[ "$FAILED" = 0 ] || echo "!!! some parts failed or were left out (see the !!! lines above)" >&2
exit "$FAILED"
