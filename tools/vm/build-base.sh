#!/bin/bash
# Builds, once per machine, what the guest lane (tests/vm/run-guest.sh) boots,
# and prints the directory that holds it:
#   vmlinuz     Debian bookworm's stock kernel (package linux-image-amd64)
#   initrd.gz   busybox + the virtio/ext4 modules, enough to mount the disks
#   root.img    raw ext4 root disk: a copy of the host's /usr, a sanitized
#               copy of /etc, a root skeleton, the kernel's modules (depmod'ed)
#   kver, info  the kernel release and what went into the build
# The kernel comes from the Debian mirror by `apt-get download` + `dpkg-deb -x`:
# the host's /boot, /lib/modules and package state are never touched.
#
# Cached under $AIRLOCK_VM_CACHE (default /var/cache/airlock-vm) in
# base-<key>/, the key hashing the kernel and busybox package versions, the
# host's dpkg status (so a package installed on the host, e.g. criu, reaches
# the guest), the /usr exclusions and this script with the initramfs init.
# Runs copy-on-write on top of root.img and never change it. A build takes a
# few minutes; AIRLOCK_VM_REBUILD=1 forces one.
#
# Env: AIRLOCK_VM_CACHE, AIRLOCK_VM_REBUILD, AIRLOCK_VM_USR_EXCLUDE (globs
# relative to /usr left out of the copy; default: the large trees no test
# uses), AIRLOCK_VM_FREE_MB (free space in the root disk, sparse; default 8192).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${AIRLOCK_VM_CACHE:-/var/cache/airlock-vm}
USR_EXCLUDE=${AIRLOCK_VM_USR_EXCLUDE-"local/cuda* lib/google-cloud-sdk lib/jvm lib/debug"}
FREE_MB=${AIRLOCK_VM_FREE_MB:-8192}
# Modules the initramfs loads, in this order (dependencies first, added by
# resolve below): virtio transport, the block driver, ext4 and the crc32c it
# asks the crypto API for (no modprobe helper runs that early).
INITRD_MODULES="virtio_pci virtio_blk crc32c_generic crc32c_intel ext4"

log() { echo "build-base: $*" >&2; }
die() { echo "build-base: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (reads all of /usr and /etc, keeps ownership)"
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9  # one builder at a time; a second run waits and then reuses the result

# ---- packages: kernel and busybox, downloaded and unpacked once per version

# Prints "<package> <version>" of the candidate of $1 (after following the
# linux-image-amd64 metapackage to the real image package).
candidate() {
  local pkg=$1 ver
  if [ "$pkg" = linux-image-amd64 ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/{print $2; exit}') || true
    [ -n "$pkg" ] || return 1
  fi
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2; exit}') || true
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  echo "$pkg $ver"
}

# Unpacks package $1 version $2 into $CACHE/pkg/<pkg>_<ver>/ unless already there.
# Prints that directory.
fetch() {
  local pkg=$1 ver=$2 dir="$CACHE/pkg/${1}_${2//:/%}" tmp
  if [ ! -e "$dir/.ok" ]; then
    log "downloading $pkg $ver from the Debian mirror"
    tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
      { rm -rf "$tmp"; die "apt-get download $pkg=$ver"; }
    dpkg-deb -x "$tmp"/*.deb "$tmp/x" || { rm -rf "$tmp"; die "dpkg-deb -x $pkg"; }
    rm -rf "$dir"
    mkdir -p "$CACHE/pkg"
    mv "$tmp/x" "$dir"
    rm -rf "$tmp"
    touch "$dir/.ok"
  fi
  echo "$dir"
}

# The newest already unpacked version of package prefix $1, for a machine whose
# apt lists are missing (offline); prints "<pkg> <ver>".
cached_pkg() {
  local d
  d=$(ls -1dt "$CACHE/pkg/$1"*_*/.ok 2>/dev/null | head -1) || true
  [ -n "$d" ] || return 1
  d=$(basename "$(dirname "$d")")
  echo "${d%%_*} ${d#*_}" | sed 's/%/:/g'
}

read -r KPKG KVERSION < <(candidate linux-image-amd64 || cached_pkg linux-image-6) ||
  die "no linux-image-amd64 candidate (apt-get update?) and nothing cached"
read -r BBPKG BBVERSION < <(candidate busybox-static || cached_pkg busybox-static) ||
  die "no busybox-static candidate (apt-get update?) and nothing cached"

# ---- the cache key

dpkg_hash=$(sha256sum /var/lib/dpkg/status | cut -c1-64)
key=$( {
  echo "$KPKG $KVERSION $BBPKG $BBVERSION"
  echo "$dpkg_hash"
  echo "exclude: $USR_EXCLUDE free: $FREE_MB"
  cat "$HERE/build-base.sh" "$HERE/initramfs-init"
} | sha256sum | cut -c1-16)
BASE="$CACHE/base-$key"
if [ -e "$BASE/.ok" ] && [ "${AIRLOCK_VM_REBUILD:-0}" != 1 ]; then
  echo "$BASE"
  exit 0
fi

start=$(date +%s)
log "building the base image in $BASE (once per machine; a few minutes)"
KDIR=$(fetch "$KPKG" "$KVERSION")
BBDIR=$(fetch "$BBPKG" "$BBVERSION")
BB="$BBDIR/bin/busybox"
KVER=$(ls "$KDIR/lib/modules")
[ -n "$KVER" ] && [ -f "$KDIR/boot/vmlinuz-$KVER" ] || die "no kernel in $KDIR"
MODDIR="$KDIR/lib/modules/$KVER"
if [ ! -e "$MODDIR/modules.dep" ]; then
  # The host has no kmod; busybox's depmod writes modules.dep and
  # modules.alias, which busybox modprobe in the guest reads.
  log "depmod $KVER"
  "$BB" depmod -b "$KDIR" "$KVER" || die "depmod -b $KDIR $KVER"
fi

WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R="$WORK/root"
mkdir -p "$R"

# ---- /usr: a copy (hard links when /usr shares the cache's filesystem, so
# staging costs nothing; mkfs.ext4 -d only reads them). Only directory entries
# in the staging tree are ever removed or added, never a linked file written.
log "staging /usr"
if ! cp -al /usr "$R/usr" 2>/dev/null; then
  rm -rf "${R:?}/usr"
  cp -a /usr "$R/usr"
fi
for g in $USR_EXCLUDE; do
  # shellcheck disable=SC2086  # $g is a glob on purpose
  rm -rf "${R:?}"/usr/$g
done
rm -rf "${R:?}/usr/lib/modules"
mkdir -p "$R/usr/lib/modules"
cp -al "$MODDIR" "$R/usr/lib/modules/$KVER" 2>/dev/null || cp -a "$MODDIR" "$R/usr/lib/modules/$KVER"

# The merged-/usr links of the host's root.
for l in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$l" ]; then
    ln -s "$(readlink "/$l")" "$R/$l"
  elif [ -e "/$l" ]; then
    die "/$l is not a symlink: the host is not merged-/usr"
  fi
done

# ---- /etc: the host's, without secrets; shadow files regenerated locked.
log "staging /etc"
cp -a /etc "$R/etc"
find "$R/etc" \( -name 'shadow*' -o -name 'gshadow*' -o -name machine-id -o -name '*secret*' \
  -o -name '*token*' -o -name '*credential*' -o -name 'netrc' -o -name '.netrc' \
  -o -name '*.key' -o -name '*_key' -o -name 'pip.conf' -o -name npmrc -o -name gitconfig \
  -o -name environment \) -prune -exec rm -rf {} +
rm -rf "${R:?}/etc/ssh" "${R:?}/etc/ssl/private"
mkdir -p "$R/etc/ssh"
install -d -m 0700 "$R/etc/ssl/private"
: > "$R/etc/environment"
shadow_gid=$(awk -F: '$1 == "shadow" {print $3}' /etc/group)
awk -F: '{print $1 ":*:19000:0:99999:7:::"}' /etc/passwd > "$R/etc/shadow"
awk -F: '{print $1 ":*::"}' /etc/group > "$R/etc/gshadow"
chown "0:${shadow_gid:-0}" "$R/etc/shadow" "$R/etc/gshadow"
chmod 0640 "$R/etc/shadow" "$R/etc/gshadow"
echo airlock-vm > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost airlock-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
echo '# the guest lane mounts everything itself (tools/vm/guest-init.sh)' > "$R/etc/fstab"
rm -f "$R/etc/mtab"
ln -s ../proc/self/mounts "$R/etc/mtab"

# ---- the root skeleton
for d in proc sys dev run tmp var/lib var/tmp var/log var/cache mnt srv home airlock opt/airlock-vm/bin; do
  mkdir -p "$R/$d"
done
chmod 1777 "$R/tmp" "$R/var/tmp"
install -d -m 0700 "$R/root"
# busybox outside /usr (sandboxes of the host image see /usr): the guest's
# modprobe (also the kernel's module helper there) and a few rescue tools.
cp "$BB" "$R/opt/airlock-vm/bin/busybox"
for a in modprobe insmod lsmod rmmod modinfo; do
  ln -s busybox "$R/opt/airlock-vm/bin/$a"
done

# ---- the initramfs
log "building the initramfs"
I="$WORK/initrd"
mkdir -p "$I/bin" "$I/modules" "$I/proc" "$I/sys" "$I/dev" "$I/newroot"
cp "$BB" "$I/bin/busybox"
for a in $("$BB" --list); do
  [ "$a" = busybox ] || ln -s busybox "$I/bin/$a"
done
install -m 0755 "$HERE/initramfs-init" "$I/init"
declare -A DEP=() PATHOF=() SEEN=()
while IFS=: read -r mod deps; do
  DEP[$mod]=$deps
  n=$(basename "$mod" .ko)
  PATHOF[${n//-/_}]=$mod
done < "$MODDIR/modules.dep"
ORDER=()
resolve() {
  local m=$1 d
  [ -n "${SEEN[$m]:-}" ] && return 0
  SEEN[$m]=1
  for d in ${DEP[$m]}; do resolve "$d"; done
  ORDER+=("$m")
}
for n in $INITRD_MODULES; do
  if [ -z "${PATHOF[$n]:-}" ]; then
    grep -q "/$n.ko\$" "$MODDIR/modules.builtin" || die "module $n: neither built in nor a module"
    continue
  fi
  resolve "${PATHOF[$n]}"
done
: > "$I/modules.list"
for m in "${ORDER[@]}"; do
  cp "$MODDIR/$m" "$I/modules/"
  basename "$m" >> "$I/modules.list"
done
(cd "$I" && find . | "$BB" cpio -o -H newc 2>/dev/null) | gzip -1 > "$WORK/initrd.gz"
rm -rf "$I"

# ---- the root disk
used_mb=$(du -sm "$R" | cut -f1)
size_mb=$((used_mb + used_mb / 8 + FREE_MB))
log "mkfs.ext4 -d: ${used_mb} MiB of files into a ${size_mb} MiB sparse image"
truncate -s "${size_mb}M" "$WORK/root.img"
mkfs.ext4 -q -F -L airlock-root -d "$R" "$WORK/root.img" ||
  die "mkfs.ext4 -d $R"
rm -rf "${R:?}"

cp "$KDIR/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
echo "$KVER" > "$WORK/kver"
{
  echo "kernel: $KPKG $KVERSION ($KVER)"
  echo "busybox: $BBPKG $BBVERSION"
  echo "dpkg status: $dpkg_hash"
  echo "usr excluded: $USR_EXCLUDE"
  echo "initramfs modules: ${ORDER[*]##*/}"
  echo "root.img: ${used_mb} MiB used of ${size_mb} MiB"
  echo "built: $(date -u +%FT%TZ) in $(($(date +%s) - start)) s"
} > "$WORK/info"
rm -f "$WORK/.ok"
rm -rf "$BASE"
mv "$WORK" "$BASE"
trap - EXIT
chmod 0755 "$BASE"
touch "$BASE/.ok"
# Older bases (other keys) are dead weight of several GiB each. run-guest.sh
# touches .used when it picks a base; one used in the last two hours may
# belong to a run that is about to open it (a running QEMU keeps its open
# backing file alive after an unlink anyway).
for old in "$CACHE"/base-*; do
  [ "$old" != "$BASE" ] || continue
  [ -n "$(find "$old/.used" -mmin -120 2>/dev/null)" ] || rm -rf "$old"
done
log "built in $(($(date +%s) - start)) s: $(tail -2 "$BASE/info" | head -1)"
echo "$BASE"
