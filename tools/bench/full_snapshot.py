#!/usr/bin/python3
"""Full snapshot benchmark (issue 6): a Python process holding 100 MB in a
checkpointable sandbox, checkpointed and restored through airlockd's API
(Snapshot full: CRIU dump + layer snapshot + seal; Restore: seal check, root,
CRIU restore, seccomp check) against `criu dump` / `criu restore` by hand on
the same tree, alternating, in one run. CRIU can't run on the build host's
kernel: run it in the guest lane,

    tests/vm/run-guest.sh tools/bench/full-snapshot-in-guest.sh

(times are under QEMU/TCG: compare the ratios, not the milliseconds). Needs
root; asserts nothing.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

REPL = r'''
import os, time
big = bytearray(os.urandom(1 << 20)) * int(os.environ.get("MIB", "100"))
token = os.urandom(8).hex()
while True:
    if os.path.exists("/tmp/cmd"):
        os.unlink("/tmp/cmd")
        with open("/tmp/out.new", "w") as f:
            f.write("%s %d" % (token, len(big)))
        os.rename("/tmp/out.new", "/tmp/out")
    time.sleep(0.02)
'''


def init_pid(sandbox_id: str) -> int:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if comm == "airlock-init" and f"airlock-{sandbox_id}" in cgroup:
            return int(pid)
    raise SystemExit(f"no airlock-init for {sandbox_id}")


def ask(s) -> str:
    """The REPL's answer; the time of one exec round trip included."""
    assert s.exec("rm -f /tmp/out; touch /tmp/cmd").ok
    for _ in range(3000):
        r = s.exec("cat /tmp/out 2>/dev/null")
        if r.stdout:
            return r.stdout.decode()
        time.sleep(0.02)
    raise SystemExit("the REPL didn't answer: " + s.exec("ps -ef").stdout.decode())


def run(argv: list[str], log: str, pass_fds=()) -> None:
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=pass_fds)
    if r.returncode != 0:
        errors = [l for l in Path(log).read_text(errors="replace").splitlines() if "Error" in l][:5]
        raise SystemExit(f"{argv[:2]} failed: {r.stderr.decode()[-300:]} " + "\n".join(errors))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=100)
    a = ap.parse_args()
    build = Path(a.build).resolve()
    sys.path.insert(0, str(REPO / "harness" / "clients" / "python"))
    os.environ["AIRLOCK_PYTHON_STUBS"] = str(build / "python")
    from airlock_client import AirlockClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airlockd import private_airlockd

    with private_airlockd(build, "airlock-full-bench-", parent="/var/tmp") as (sock, state):
        work = state.parent
        c = AirlockClient(sock)
        s = c.create(checkpointable=True)
        sid = s.id
        assert s.exec("cat > /tmp/repl.py", stdin=REPL.encode()).ok
        assert s.exec(f"MIB={a.mib} setsid python3 /tmp/repl.py </dev/null >/tmp/repl.log 2>&1 &").ok
        answer = ask(s)
        print(f"sandbox {sid}: a Python process holding {answer.split()[1]} bytes")
        init = init_pid(sid)
        key = os.readlink(f"/proc/{init}/fd/3")  # init's channel: socket:[inode]
        base = int(Path(f"/proc/{init}/uid_map").read_text().split()[1])
        ino = key[len("socket:["):-1]

        # Checkpoints of the running tree, alternating.
        hand, api, frozen, seal, image_bytes = [], [], [], [], 0
        hand_dir = ""
        for i in range(a.runs):
            hand_dir = tempfile.mkdtemp(prefix="hand-", dir=work)
            t = time.monotonic()
            run(["criu", "dump", "-t", str(init), "-D", hand_dir, "--leave-running", "--external", f"unix[{ino}]",
                 "--external", "mnt[]", "--manage-cgroups=ignore", "-o", "dump.log"], f"{hand_dir}/dump.log")
            hand.append((time.monotonic() - t) * 1000)
            if i + 1 < a.runs:
                shutil.rmtree(hand_dir)
            else:
                # As Sandbox::Checkpoint leaves them: a restore reads them from
                # inside the user namespace (docs/criu.md).
                for f in [hand_dir] + glob.glob(hand_dir + "/*"):
                    os.chown(f, base, 0)
                    os.chmod(f, 0o750 if f == hand_dir else 0o640)
            t = time.monotonic()
            snap = s.snapshot(full=True, keep_last=1)
            api.append((time.monotonic() - t) * 1000)
            frozen.append(snap.frozen_us / 1000)
            seal.append(snap.seal_us / 1000)
            image_bytes = snap.process_images_bytes
        print(f"\ncheckpoint of the running tree ({image_bytes >> 20} MiB of images), {a.runs} runs each, medians:")
        h, p = statistics.median(hand), statistics.median(api)
        print(f"  criu dump by hand (--leave-running)        {h:9.1f} ms")
        print(f"  Snapshot(full) through the API             {p:9.1f} ms   (x {p / h:.2f})")
        print(f"    of which the tree was stopped            {statistics.median(frozen):9.1f} ms")
        print(f"    and hashing + sealing the images         {statistics.median(seal):9.1f} ms")

        # Restores, the sandbox gone, alternating.
        s.delete()
        layer = [d for d in glob.glob(str(state / "images" / "host" / "*")) if os.path.isdir(d)
                 and not os.path.basename(d).startswith(".")][0]
        r_hand, r_api, r_exec = [], [], []
        for i in range(a.runs):
            parts = Path(tempfile.mkdtemp(prefix="root-", dir=work))
            for d in ("root", "upper", "work"):
                (parts / d).mkdir()
            subprocess.run(["mount", "-t", "overlay", "none", "-o",
                            f"lowerdir={layer},upperdir={parts}/upper,workdir={parts}/work", str(parts / "root")],
                           check=True)
            a_end, b_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pidfile = str(parts / "pid")
            t = time.monotonic()
            run(["criu", "restore", "-D", hand_dir, "-d", "--pidfile", pidfile, "--root", str(parts / "root"),
                 "--external", "mnt[]", "--manage-cgroups=ignore", "--inherit-fd",
                 f"fd[{b_end.fileno()}]:{key}", "-o", "restore-hand.log"], f"{hand_dir}/restore-hand.log",
                pass_fds=(b_end.fileno(),))
            r_hand.append((time.monotonic() - t) * 1000)
            os.kill(int(Path(pidfile).read_text()), 9)
            a_end.close()
            b_end.close()
            time.sleep(0.3)
            subprocess.run(["umount", "-l", str(parts / "root")])

            t = time.monotonic()
            r = c.restore(snap.id)
            r_api.append((time.monotonic() - t) * 1000)
            t = time.monotonic()
            again = ask(r)
            r_exec.append((time.monotonic() - t) * 1000)
            assert again == answer, (again, answer)
            r.delete()
        print(f"\nrestore of that checkpoint, {a.runs} runs each, medians:")
        h, p = statistics.median(r_hand), statistics.median(r_api)
        print(f"  criu restore by hand (-d, onto an overlay) {h:9.1f} ms")
        print(f"  Restore of the full snapshot (API)         {p:9.1f} ms   (x {p / h:.2f})")
        print(f"    then the first answer of the process     {statistics.median(r_exec):9.1f} ms")
        print("  (the API's includes checking the seal's digests, the sandbox's root and cgroups, the seccomp check)")
        c.delete_snapshot(snap.id)


if __name__ == "__main__":
    main()
