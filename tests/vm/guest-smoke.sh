#!/bin/bash
# Guest script (tests/vm/run-guest.sh tests/vm/guest-smoke.sh): checks that the
# guest is what the lane promises and prints what it found. Exits 0 only if
# every check passed.
set -u
failed=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; failed=$((failed + 1)); }
check() {  # check NAME CMD...: runs CMD, prints its output on failure
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name: $(echo "$out" | tail -5)"; fi
}

# Kernel: Debian's stock 6.1.
kr=$(uname -r)
case "$kr" in 6.1.*) ok "kernel $kr ($(uname -v))" ;; *) bad "kernel $kr is not 6.1.x" ;; esac

# cgroup2 only, with the controllers the runtime needs.
fstype=$(stat -f -c %T /sys/fs/cgroup)
[ "$fstype" = cgroup2fs ] && ok "/sys/fs/cgroup is cgroup2 ($(findmnt -no OPTIONS /sys/fs/cgroup))" ||
  bad "/sys/fs/cgroup is $fstype, not cgroup2fs"
v1=$(awk '$3 == "cgroup" {print $2}' /proc/mounts)
[ -z "$v1" ] && ok "no cgroup v1 hierarchy mounted" || bad "cgroup v1 mounted at: $v1"
ctl=$(cat /sys/fs/cgroup/cgroup.controllers)
sub=$(cat /sys/fs/cgroup/cgroup.subtree_control)
for c in memory pids cpu; do
  case " $ctl " in *" $c "*) ;; *) bad "controller $c not available (cgroup.controllers: $ctl)"; continue ;; esac
  case " $sub " in *" $c "*) ok "controller $c available and enabled for children" ;;
    *) bad "controller $c not in the root's subtree_control ($sub)" ;; esac
done
check "a child cgroup takes memory.max and pids.max" sh -c '
  d=/sys/fs/cgroup/smoke.$$ && mkdir $d && echo 64M > $d/memory.max && echo 10 > $d/pids.max &&
  [ "$(cat $d/memory.max)" = 67108864 ] && [ "$(cat $d/pids.max)" = 10 ] && rmdir $d'

# Storage: overlay, loop, btrfs.
t=$(mktemp -d /tmp/smoke.XXXXXX)
mkdir -p "$t/lower" "$t/upper" "$t/work" "$t/merged"
echo lower > "$t/lower/f"
check "overlay mounts and copies up" sh -c "
  mount -t overlay overlay -o lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work $t/merged &&
  echo upper > $t/merged/f && [ \"\$(cat $t/lower/f)\" = lower ] && [ \"\$(cat $t/upper/f)\" = upper ] &&
  umount $t/merged"
truncate -s 512M /var/tmp/smoke-btrfs.img
check "loop device attaches" sh -c "
  dev=\$(losetup --find --show /var/tmp/smoke-btrfs.img) && echo \$dev && losetup -d \$dev"
check "mkfs.btrfs on a loop file, mount, subvolume, snapshot" sh -c "
  mkfs.btrfs -q -f /var/tmp/smoke-btrfs.img && mkdir -p $t/btrfs &&
  mount -o loop /var/tmp/smoke-btrfs.img $t/btrfs && btrfs subvolume create $t/btrfs/sv >/dev/null &&
  echo x > $t/btrfs/sv/f && btrfs subvolume snapshot $t/btrfs/sv $t/btrfs/snap >/dev/null &&
  [ \"\$(cat $t/btrfs/snap/f)\" = x ] && btrfs quota enable $t/btrfs && umount $t/btrfs"
rm -f /var/tmp/smoke-btrfs.img

# User namespaces, as root and as an unprivileged user.
check "unshare -Ur true (root)" unshare -Ur true
check "unshare -Ur true (uid 65534)" setpriv --reuid=65534 --regid=65534 --clear-groups unshare -Ur true
check "user.max_user_namespaces > 0 ($(cat /proc/sys/user/max_user_namespaces))" \
  test "$(cat /proc/sys/user/max_user_namespaces)" -gt 0

# The *_diag modules CRIU needs.
for m in netlink_diag unix_diag inet_diag tcp_diag udp_diag af_packet_diag; do
  [ -d "/sys/module/$m" ] && ok "module $m loaded" || bad "module $m not loaded"
done

# The build under test.
for f in airlock airlock-init; do
  [ -x "/airlock/build/$f" ] && ok "/airlock/build/$f present" || bad "/airlock/build/$f missing"
done
if [ -x /airlock/build/airlock ]; then
  out=$(/airlock/build/airlock check 2>&1)
  rc=$?
  echo "$out" | sed 's/^/      /'
  [ $rc = 0 ] && ok "airlock check" || bad "airlock check exited $rc"
fi

rm -rf "$t"
echo "smoke: $failed failed"
[ $failed = 0 ]
