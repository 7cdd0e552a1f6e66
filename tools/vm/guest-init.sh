#!/bin/bash
# PID 1 of the guest lane, after the initramfs has mounted the root disk at /
# and the run disk at /airlock (tests/vm/run-guest.sh copies this file there
# for every run, so changing it needs no rebuild of the base image).
#
# Sets the guest up the way the lane promises: proc, sysfs, devtmpfs, devpts,
# ONLY cgroup2 (the kernel runs with cgroup_no_v1=all), tmpfs /run and /tmp,
# / rprivate, lo up, the modules the lane needs, +memory +pids +cpu in the
# root's subtree_control. Then runs the guest script with its output going to
# /airlock/out/guest.log (a 9p share of the host's artifacts dir) and, live,
# to a virtio console (hvc0; the second UART if that is missing), writes its
# exit code to /airlock/out/guest.rc and the kernel log to dmesg.log, and
# powers off. PID 1 exiting would panic the kernel; with panic=-1 and
# -no-reboot QEMU then exits, and the host reports the missing exit code.
export PATH=/opt/airlock-vm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
# shellcheck source=/dev/null
. /airlock/.vm/config

say() { echo "airlock-vm: $*" > /dev/console; }
up() { cut -d' ' -f1 /proc/uptime; }

off() {
  sync
  umount /airlock/out 2>/dev/null
  echo o > /proc/sysrq-trigger
  sleep 30
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
# The options systemd mounts cgroup2 with on a unified host.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount --make-rprivate /
hostname airlock-vm
ln -sf /proc/self/fd /dev/fd 2>/dev/null
ln -sf /proc/self/fd/0 /dev/stdin 2>/dev/null
ln -sf /proc/self/fd/1 /dev/stdout 2>/dev/null
ln -sf /proc/self/fd/2 /dev/stderr 2>/dev/null

# The kernel asks this helper for modules it needs on demand (crypto-crc32c,
# fs-overlay, net-pf-...): busybox's modprobe reads busybox depmod's files.
echo /opt/airlock-vm/bin/modprobe > /proc/sys/kernel/modprobe
# 9p first: it carries the output. overlay, btrfs, loop: the storage pool and
# layers. The *_diag modules: CRIU's socket dumping. The crypto ones btrfs asks
# for while mounting.
missing=""
for m in virtio_console 9pnet_virtio 9p virtio_rng overlay loop btrfs crc32c_generic crc32c_intel \
  xxhash_generic blake2b_generic sha256_generic netlink_diag unix_diag inet_diag \
  tcp_diag udp_diag raw_diag af_packet_diag veth; do
  if [ -d "/sys/module/$m" ] || modprobe -q "$m" 2>/dev/null || [ -d "/sys/module/$m" ]; then
    :
  else
    missing="$missing $m"
  fi
done
[ -z "$missing" ] || say "modules not available:$missing"

ip link set lo up || say "ip link set lo up failed"
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control ||
  say "enabling +memory +pids +cpu in the root cgroup failed"

# The results go to the host's artifacts dir over 9p; if that fails they stay
# on the run disk and only the serial stream (with its exit-code marker)
# reaches the host.
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /airlock/out; then
  say "mounting the 9p output share failed; the serial stream is the only output"
fi

# The source read-only; both trees also at the absolute paths compiled into
# the build (AIRLOCK_SOURCE_DIR, AIRLOCK_BUILD_DIR), as real directories: the
# root tests realpath() the build dir and airlock refuses symlinked sources.
mount --bind /airlock/src /airlock/src && mount -o remount,bind,ro /airlock/src
alias_tree() {  # alias_tree FROM TO [ro]
  [ -n "$2" ] && [ "$2" != "$1" ] || return 0
  mkdir -p "$2" && mount --bind "$1" "$2" || { say "bind $1 at $2 failed"; return 0; }
  [ "${3:-}" != ro ] || mount -o remount,bind,ro "$2"
}
alias_tree /airlock/src "$HOST_SRC" ro
alias_tree /airlock/build "$HOST_BUILD"

export AIRLOCK_BUILD=/airlock/build AIRLOCK_SRC=/airlock/src AIRLOCK_OUT=/airlock/out
export AIRLOCK_IN_GUEST=1
# The live stream: a virtio console (no UART pacing), else the second UART.
stream=/dev/hvc0
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -c $stream ] && break; sleep 0.1; done
[ -c $stream ] || stream=/dev/ttyS1
stty -F $stream raw -echo 2>/dev/null
say "running $SCRIPT_NAME at $(up) s after boot (kernel $(uname -r)), live output on $stream"
echo "airlock-vm: boot to script: $(up) s" > $stream
cd /airlock/src || cd /
# The script's stdout and stderr, merged, to the log and the live stream.
/airlock/.vm/script < /dev/null 2>&1 | tee /airlock/out/guest.log > $stream
rc=${PIPESTATUS[0]}
echo "$rc" > /airlock/out/guest.rc
sync
echo "AIRLOCK-VM-EXIT $rc" > $stream
# The whole kernel log (the console shows only errors, see run-guest.sh).
dmesg > /airlock/out/dmesg.log 2>&1
say "$SCRIPT_NAME exited $rc at $(up) s after boot; powering off"
off
