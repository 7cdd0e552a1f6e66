#!/usr/bin/env python3
"""Writes an OCI bundle (config.json + rootfs/) for the crun/runc peers.

Isolation meant to be comparable to an airlock sandbox: a user namespace
mapping root to a high host range, new pid/mount/net/uts/ipc namespaces,
Docker's default capability set minus MKNOD and NET_RAW, no_new_privs,
seccomp from seccomp-profiles/default.json (if present), memory 512M and
pids 1024 limits in an explicit cgroupsPath, and a rootfs that binds the
host's /usr read-only with the usual bin/lib symlinks.

Usage: make_bundle.py BUNDLE_DIR --cgroups-path PATH [--seccomp FILE]
                      [--host-id N] [-- CMD ARG...]   (default CMD: /bin/true)
Prints one line describing what seccomp is in effect.
"""
import argparse
import json
import os
import sys

# Docker's default capabilities minus MKNOD and NET_RAW (DESIGN.md, 5).
CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# Keys of an OCI linux.seccomp object and of one of its syscall rules.
OCI_ARCH_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "flags",
                 "listenerPath", "listenerMetadata", "syscalls"}
OCI_SYSCALL_KEYS = {"names", "action", "errnoRet", "args"}


def oci_seccomp(profile):
    """Returns the profile as an OCI linux.seccomp object.

    Accepts the OCI shape directly, or Docker's (archMap, includes/excludes):
    entries conditional on capabilities or kernel versions are dropped (the
    stricter choice), unconditional ones kept.
    """
    out = {k: v for k, v in profile.items() if k in OCI_ARCH_KEYS}
    if "archMap" in profile and "architectures" not in out:
        arches = []
        for entry in profile["archMap"] or []:
            arches.append(entry["architecture"])
            arches.extend(entry.get("subArchitectures") or [])
        out["architectures"] = arches
    syscalls = []
    for entry in profile.get("syscalls") or []:
        if entry.get("includes") or entry.get("excludes"):
            continue
        if "names" not in entry and "name" in entry:
            entry = dict(entry, names=[entry["name"]])
        syscalls.append({k: v for k, v in entry.items() if k in OCI_SYSCALL_KEYS})
    out["syscalls"] = syscalls
    if "defaultAction" not in out:
        raise ValueError("profile has no defaultAction")
    return out


def make_rootfs(rootfs):
    for d in ("usr", "proc", "dev", "sys", "tmp", "etc", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    # Mirror the host's merged-/usr links, like the airlock host image.
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = os.path.join("/", name)
        dst = os.path.join(rootfs, name)
        if os.path.islink(host) and not os.path.lexists(dst):
            os.symlink(os.readlink(host).lstrip("/"), dst)


def config(args, seccomp):
    mappings = [{"containerID": 0, "hostID": args.host_id, "size": 65536}]
    cfg = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args.args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": "/usr", "type": "bind", "source": "/usr",
             "options": ["rbind", "ro", "nosuid", "nodev"]},
        ],
        "linux": {
            "uidMappings": mappings,
            "gidMappings": mappings,
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "user")],
            "cgroupsPath": args.cgroups_path,
            "resources": {
                "memory": {"limit": 512 * 1024 * 1024},
                "pids": {"limit": 1024},
            },
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if seccomp is not None:
        cfg["linux"]["seccomp"] = seccomp
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--cgroups-path", required=True)
    ap.add_argument("--seccomp", default="")
    ap.add_argument("--host-id", type=int, default=1_000_000)
    argv = sys.argv[1:]
    cmd = ["/bin/true"]
    if "--" in argv:
        cmd = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = ap.parse_args(argv)
    args.args = cmd

    seccomp, note = None, "seccomp: none (no profile given)"
    if args.seccomp:
        if not os.path.exists(args.seccomp):
            note = f"seccomp: NONE — {args.seccomp} is missing"
        else:
            with open(args.seccomp) as f:
                seccomp = oci_seccomp(json.load(f))
            names = sum(len(r.get("names", [])) for r in seccomp["syscalls"])
            note = (f"seccomp: {args.seccomp} ({len(seccomp['syscalls'])} rules naming "
                    f"{names} syscalls, default {seccomp['defaultAction']})")
    os.makedirs(args.bundle, exist_ok=True)
    make_rootfs(os.path.join(args.bundle, "rootfs"))
    with open(os.path.join(args.bundle, "config.json"), "w") as f:
        json.dump(config(args, seccomp), f, indent=1)
    print(note)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as e:
        print(f"make_bundle: {e}", file=sys.stderr)
        sys.exit(1)
