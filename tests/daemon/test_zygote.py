"""Sandboxes cloned by airlockd's zygote (runtime/launch/zygote.h).

airlockd starts `airlock-init --zygote` once; every create's sandbox child is
cloned there (CLONE_PARENT: it is still airlockd's child) and becomes init
without an exec. What a program inside sees of init must be what an exec'd
init shows (capabilities, no_new_privs, seccomp), init must hold no host
descriptor, and a zygote that dies costs nothing but its speed.
"""

from __future__ import annotations

import os
import signal
import time

from conftest import find_cgroups, own_daemon


def status_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def children(pid: int, comm: str) -> list[int]:
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and name == comm:
            found.append(int(p))
    return found


def init_host_pid(sandbox_id: str) -> int:
    """The host pid of a sandbox's init: the process of its init group whose
    pid inside is 1."""
    for cg in find_cgroups({f"airlock-{sandbox_id}"}):
        procs = os.path.join(cg, "init", "cgroup.procs")
        if not os.path.exists(procs):
            continue
        for p in open(procs).read().split():
            nspid = status_fields(open(f"/proc/{p}/status").read()).get("NSpid", "").split()
            if nspid and nspid[-1] == "1":
                return int(p)
    raise AssertionError(f"no init found for {sandbox_id}")


def check_init_as_exec_leaves_it(session) -> None:
    init = status_fields(session.exec(["cat", "/proc/1/status"]).stdout.decode())
    own = status_fields(session.exec(["cat", "/proc/self/status"]).stdout.decode())
    assert init["Name"] == "airlock-init"
    # What an exec as root in the sandbox's user namespace leaves: permitted
    # and effective are the bounding set, nothing inheritable or ambient.
    assert init["CapEff"] == init["CapPrm"] == init["CapBnd"], init
    assert init["CapInh"] == init["CapAmb"] == "0000000000000000", init
    assert init["CapBnd"] == own["CapBnd"], (init, own)
    assert init["NoNewPrivs"] == "1"
    assert init["Seccomp"] == "2"
    argv = session.exec(["cat", "/proc/1/cmdline"]).stdout.split(b"\0")
    assert os.path.basename(argv[0]) == b"airlock-init"
    assert b"--zygote" not in argv


def test_init_shows_what_an_exec_would_leave(daemon, client):
    assert children(daemon.pid, "airlock-zygote"), "airlockd started no zygote:\n" + daemon.log_tail()
    s = client.create()
    try:
        check_init_as_exec_leaves_it(s)
        pid = init_host_pid(s.id)
        # CLONE_PARENT: init is airlockd's own child, as if it had cloned it.
        assert status_fields(open(f"/proc/{pid}/status").read())["PPid"] == str(daemon.pid)
        # Nothing of the zygote or the host: /dev/null, init's channel and
        # its spawner's, its signalfd.
        targets = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        for t in targets:
            assert t == "/dev/null" or t.startswith("socket:[") or t == "anon_inode:[signalfd]", targets
    finally:
        s.delete()


def test_a_lost_zygote_costs_only_its_speed(base_dir):
    with own_daemon(base_dir, "zygote-lost") as d:
        zygotes = children(d.pid, "airlock-zygote")
        assert len(zygotes) == 1, d.log_tail()
        os.kill(zygotes[0], signal.SIGKILL)
        with d.client() as c:
            for _ in range(2):  # the first notices, the second never asks
                s = c.create()
                try:
                    r = s.exec(["/bin/sh", "-c", "echo ok; cat /proc/1/status"])
                    assert r.ok and r.stdout.startswith(b"ok\n"), r
                    check_init_as_exec_leaves_it(s)
                finally:
                    s.delete()
        deadline = time.monotonic() + 5
        while "zygote lost" not in d.log_tail(200) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "zygote lost" in d.log_tail(200)
        assert d.log_tail(200).count("zygote lost") == 1


def test_without_a_zygote(base_dir):
    with own_daemon(base_dir, "no-zygote", extra=("--no-zygote",)) as d:
        assert children(d.pid, "airlock-zygote") == []
        with d.client() as c:
            s = c.create()
            try:
                check_init_as_exec_leaves_it(s)
            finally:
                s.delete()
