#!/bin/bash
# The guest lane: runs GUEST_SCRIPT as root inside a QEMU guest that boots
# Debian bookworm's stock 6.1 kernel with only cgroup2 mounted, and exits with
# the script's exit code.
#
# Usage: tests/vm/run-guest.sh GUEST_SCRIPT [--timeout SECONDS] [--artifacts DIR] [--keep]
#   --timeout    boot + script + power-off, in seconds (default 600)
#   --artifacts  where console.log, stream.log and out/ (guest.log, guest.rc,
#                and whatever the script writes to $AIRLOCK_OUT) are kept
#                (default: a new /tmp/airlock-vm.XXXXXX/artifacts)
#   --keep       keep the run's disks (run.img, root.qcow2) in its work dir (printed)
# Env: AIRLOCK_BUILD   build dir to test (default: the repo's ./build)
#      AIRLOCK_VM_CACHE, AIRLOCK_VM_REBUILD, ...  see tools/vm/build-base.sh
#      AIRLOCK_VM_MEM (MiB, default 3584), AIRLOCK_VM_CPUS (default 2),
#      AIRLOCK_VM_APPEND (extra kernel command line)
# Exit: the script's exit code; 77 when the lane can't run here (SKIP: not
# root, no QEMU); 125 when the lane itself failed (no boot, timeout, no exit
# code), with the tail of the serial console printed.
#
# Inside the guest the script sees /airlock/build (a copy of the build dir,
# also at its original absolute path), /airlock/src (the sources, read-only,
# also at their original path), $AIRLOCK_OUT=/airlock/out (the host's
# artifacts/out dir over 9p), a root disk carrying the host's /usr (a
# copy-on-write overlay of the cached base image: throwaway), 2 vCPUs under
# TCG. Never KVM: /dev/kvm here is PVM-backed and a stock kernel hangs on it.
# The serial console (console.log) shows kernel errors only (loglevel=4: a
# UART under TCG is slow, and an OOM storm printed there stalls the guest);
# the guest saves the full kernel log as out/dmesg.log. For a verbose boot:
# AIRLOCK_VM_APPEND=loglevel=7.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS="$REPO/tools/vm"
SKIP=77
LANE_FAIL=125

say() { echo "run-guest: $*" >&2; }
skip() { echo "SKIP: $*" >&2; exit $SKIP; }
fail() { echo "run-guest: FAIL: $*" >&2; exit $LANE_FAIL; }

script="" timeout=600 art="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout=${2:?--timeout needs SECONDS}; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --artifacts) art=${2:?--artifacts needs DIR}; shift 2 ;;
    --artifacts=*) art=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) fail "unknown option $1" ;;
    *) [ -z "$script" ] || fail "one GUEST_SCRIPT only (got $script and $1)"; script=$1; shift ;;
  esac
done
[ -n "$script" ] || fail "usage: $0 GUEST_SCRIPT [--timeout SECONDS] [--artifacts DIR] [--keep]"
[ -f "$script" ] || fail "no guest script $script"
case "$timeout" in ''|*[!0-9]*) fail "--timeout: not a number of seconds: $timeout" ;; esac

# ---- can the lane run here?
[ "$(id -u)" = 0 ] || skip "the guest lane needs root (builds a disk image from /usr and /etc)"
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
  say "installing qemu-system-x86 and qemu-utils (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-system-x86 qemu-utils >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 qemu-utils >/dev/null 2>&1; }
  command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null ||
    skip "qemu-system-x86_64 is missing and apt-get install qemu-system-x86 qemu-utils failed"
fi
qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg ||
  skip "qemu-system-x86_64 can't run TCG here: $(qemu-system-x86_64 -accel help 2>&1 | tr '\n' ' ')"

# ---- the build and sources to test
build=${AIRLOCK_BUILD:-$REPO/build}
[ -d "$build" ] || fail "no build dir $build (run tools/setup.sh, or set AIRLOCK_BUILD)"
build=$(cd "$build" && pwd -P)
[ -f "$build/CMakeCache.txt" ] || fail "$build is not a CMake build dir (no CMakeCache.txt)"
# The absolute paths compiled into the binaries (AIRLOCK_BUILD_DIR,
# AIRLOCK_SOURCE_DIR): the guest shows the copies there too.
host_build=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$build/CMakeCache.txt")
host_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
src=$REPO
[ -n "$host_src" ] && [ -d "$host_src" ] && src=$host_src

# ---- the cached base (kernel, initramfs, root disk)
t0=$(date +%s)
base=$("$TOOLS/build-base.sh") || fail "building the base image (tools/vm/build-base.sh) failed"
t_base=$(($(date +%s) - t0))
touch "$base/.used"  # keeps a concurrent rebuild from pruning it (build-base.sh)
for f in vmlinuz initrd.gz root.img; do
  [ -f "$base/$f" ] || fail "base $base has no $f"
done

# ---- this run's work dir, artifacts and disks
work=$(mktemp -d /tmp/airlock-vm.XXXXXX) || fail "mktemp"
[ -n "$art" ] || art="$work/artifacts"
mkdir -p "$art/out" || fail "mkdir $art/out"
art=$(cd "$art" && pwd -P)
rm -f "$art/out/guest.rc" "$art/out/guest.log" "$art/console.log" "$art/stream.log"
qpid="" tpid=""
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  [ -n "$tpid" ] && kill "$tpid" 2>/dev/null
  if [ $keep = 1 ]; then
    say "kept the disks in $work"
  else
    rm -f "$work/run.img" "$work/root.qcow2"
    rm -rf "$work/stage"
    rmdir "$work" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# The run disk: init, config, script, and copies of the build and sources.
# A real ext4 disk rather than a 9p share: binaries exec from it, and the
# sandboxes can idmap-mount from it (9p can't be idmapped).
t1=$(date +%s)
S="$work/stage"
mkdir -p "$S/.vm" "$S/build" "$S/src" "$S/out"
install -m 0755 "$TOOLS/guest-init.sh" "$S/.vm/init"
install -m 0755 "$script" "$S/.vm/script"
{
  printf 'SCRIPT_NAME=%q\n' "$(basename "$script")"
  printf 'HOST_BUILD=%q\n' "$host_build"
  printf 'HOST_SRC=%q\n' "$host_src"
} > "$S/.vm/config"
# Object files and archives are half the build dir and no test reads them.
tar -C "$build" -cf - --exclude=CMakeFiles --exclude='*.a' --exclude='*.o' . |
  tar -C "$S/build" -xf - || fail "copying $build"
# The sources without .git and without build dirs (any top-level dir with a
# CMakeCache.txt; a symlink to one is copied as the symlink); an empty dir
# stays where a build dir was so it can be mounted over on the read-only copy.
excludes=(--exclude=./.git)
for d in "$src"/*/; do
  d=${d%/}
  [ -f "$d/CMakeCache.txt" ] && [ ! -L "$d" ] || continue
  excludes+=("--exclude=./$(basename "$d")")
  mkdir -p "$S/src/$(basename "$d")"
done
tar -C "$src" -cf - "${excludes[@]}" . | tar -C "$S/src" -xf - || fail "copying $src"
size_mb=$(($(du -sm "$S" | cut -f1) * 5 / 4 + 256))
truncate -s "${size_mb}M" "$work/run.img"
mkfs.ext4 -q -F -L airlock-run -d "$S" "$work/run.img" || fail "mkfs.ext4 -d $S"
rm -rf "$S"
qemu-img create -q -f qcow2 -b "$base/root.img" -F raw "$work/root.qcow2" ||
  fail "qemu-img create (overlay on $base/root.img)"
t_disk=$(($(date +%s) - t1))

# ---- boot
: > "$art/stream.log"
: > "$art/console.log"
mem=${AIRLOCK_VM_MEM:-3584}
cpus=${AIRLOCK_VM_CPUS:-2}
say "booting $(cat "$base/kver") (TCG, $cpus vCPUs, $mem MiB) for $(basename "$script"); timeout ${timeout}s"
t2=$(date +%s)
timeout -k 10 "$timeout" qemu-system-x86_64 -name airlock-vm \
  -machine pc -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$base/vmlinuz" -initrd "$base/initrd.gz" \
  -append "console=ttyS0,115200 loglevel=4 log_buf_len=8M panic=-1 cgroup_no_v1=all mitigations=off ${AIRLOCK_VM_APPEND:-}" \
  -serial "file:$art/console.log" \
  -drive "file=$work/root.qcow2,format=qcow2,if=virtio,cache=unsafe" \
  -drive "file=$work/run.img,format=raw,if=virtio,cache=unsafe" \
  -virtfs "local,path=$art/out,mount_tag=out,security_model=none,id=out" \
  -device virtio-serial-pci -chardev "file,id=stream,path=$art/stream.log" \
  -device virtconsole,chardev=stream \
  -device virtio-rng-pci -nic none \
  </dev/null >"$art/qemu.log" 2>&1 &
qpid=$!
# The guest's output, live; the exit-code marker is for us, not the reader.
tail -n +1 -F --pid=$qpid "$art/stream.log" 2>/dev/null | grep --line-buffered -v '^AIRLOCK-VM-EXIT ' &
tpid=$!
wait $qpid
qrc=$?
qpid=""
wait $tpid 2>/dev/null
tpid=""
t_qemu=$(($(date +%s) - t2))

console_tail() {
  echo "---- serial console (last 60 lines of $art/console.log) ----" >&2
  tail -n 60 "$art/console.log" | tr -d '\r' >&2
  if [ -s "$art/qemu.log" ]; then
    echo "---- qemu ----" >&2
    tail -n 20 "$art/qemu.log" >&2
  fi
  echo "----" >&2
}

rc=""
[ -f "$art/out/guest.rc" ] && rc=$(tr -dc 0-9 < "$art/out/guest.rc")
[ -n "$rc" ] || rc=$(sed -n 's/^.*AIRLOCK-VM-EXIT \([0-9]*\).*$/\1/p' "$art/stream.log" "$art/console.log" | tail -1)
boot=$(sed -n 's/^airlock-vm: boot to script: \([0-9.]*\) s.*/\1/p' "$art/stream.log" | head -1)
timing="base ${t_base}s, run disk ${t_disk}s, qemu ${t_qemu}s wall, guest boot-to-script ${boot:-?}s"
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  console_tail
  fail "the guest did not finish within ${timeout}s ($timing); artifacts in $art"
fi
if [ -z "$rc" ]; then
  console_tail
  if [ -z "$boot" ]; then
    fail "the guest did not boot to the script (qemu exit $qrc; $timing; AIRLOCK_VM_APPEND=loglevel=7 shows the whole boot); artifacts in $art"
  fi
  fail "the guest script left no exit code (qemu exit $qrc; $timing); artifacts in $art"
fi
[ "$rc" = 0 ] || say "$(basename "$script") exited $rc in the guest; serial console: $art/console.log"
say "$timing; artifacts in $art"
exit "$rc"
