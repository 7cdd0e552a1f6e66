"""Recovery (issue 6): a sandbox that dies underneath its users is rebuilt
from its last snapshot under the same id, its generation one higher."""

from __future__ import annotations

import os
import signal
import time

from test_lifecycle import collect_events


def init_pid(sandbox_id: str) -> int:
    """airlock-init of the sandbox, found by its cgroup."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cgroup") as f:
                cgroup = f.read()
        except OSError:
            continue
        if comm == "airlock-init" and f"airlock-{sandbox_id}" in cgroup:
            return int(pid)
    raise AssertionError(f"no airlock-init for {sandbox_id}")


def wait_for(pred, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_rebuilt_from_its_last_snapshot(client):
    s = client.create(recovery={"rebuild": True, "snapshot_after_exec": True}, labels={"test": "recovery"})
    try:
        r = s.exec("echo before > /workspace/state")
        assert r.ok and r.generation == 1
        wait_for(lambda: client.list_snapshots(s.id))
        stream = client.events(sandbox_id=s.id)
        time.sleep(0.3)
        os.kill(init_pid(s.id), signal.SIGKILL)
        info = wait_for(lambda: (lambda i: i if i.state == "RUNNING" and i.generation == 2 else None)(client.get(s.id)))
        assert info.rebuilt_from.startswith("snap-")
        evs = collect_events(stream, lambda ev: any(e.type == "REHYDRATED" for e in ev))
        assert [e.type for e in evs][:2] == ["EXITED", "REHYDRATED"], evs
        rehydrated = [e for e in evs if e.type == "REHYDRATED"][0]
        assert info.rebuilt_from in rehydrated.message and "lost" in rehydrated.message
        after = s.exec("cat /workspace/state")
        assert after.stdout == b"before\n" and after.generation == 2
        # Every reply says so, not only Run's: file calls (a stream, an empty
        # reply) and a streamed Exec carry it as metadata.
        from airlock_client import Session
        assert s.info.generation == 1  # as created
        stale = Session(client, s.info)
        assert stale.read("/workspace/state") == b"before\n" and stale.generation == 2
        stale = Session(client, s.info)
        stale.rm("/workspace/state")
        assert stale.generation == 2
        stream = stale.exec_stream(["/bin/true"])
        list(stream)
        assert stream.generation == 2
    finally:
        s.delete()
        for x in client.list_snapshots(s.id):
            client.delete_snapshot(x.id)


def test_without_a_snapshot_it_stays_stopped_and_says_why(client):
    s = client.create(recovery={"rebuild": True}, labels={"test": "recovery"})
    try:
        os.kill(init_pid(s.id), signal.SIGKILL)
        info = wait_for(lambda: (lambda i: i if "not rebuilt" in i.stop_reason else None)(client.get(s.id)))
        assert info.state == "STOPPED" and "no snapshot" in info.stop_reason
    finally:
        try:
            s.delete()
        except Exception:
            pass


def test_rebuilt_after_airlockd_restarts_without_it(base_dir):
    # airlockd is killed; meanwhile the sandbox's init dies too (the keeper
    # lets it go). The next airlockd finds it gone and rebuilds it.
    from conftest import own_daemon

    with own_daemon(base_dir, "recovery-restart") as d:
        c = d.client()
        s = c.create(recovery={"rebuild": True}, labels={"test": "recovery"})
        assert s.exec("echo kept > /workspace/state").ok
        s.snapshot()
        pid = init_pid(s.id)
        c.close()
        d.kill9()
        os.kill(pid, signal.SIGKILL)
        d.start()
        c = d.client()
        info = wait_for(lambda: (lambda i: i if i.state == "RUNNING" and i.generation == 2 else None)(c.get(s.id)))
        assert info.rebuilt_from
        assert c.resume(s.id).exec("cat /workspace/state").stdout == b"kept\n"
        c.destroy(s.id)
        for x in c.list_snapshots():
            c.delete_snapshot(x.id)
        c.close()


def test_a_sandbox_that_keeps_dying_is_backed_off_then_parked(client):
    s = client.create(recovery={"rebuild": True, "max_rebuilds": 2}, labels={"test": "recovery"})
    try:
        s.snapshot()
        os.kill(init_pid(s.id), signal.SIGKILL)
        wait_for(lambda: client.get(s.id).generation == 2 and client.get(s.id).state == "RUNNING")
        t = time.monotonic()
        os.kill(init_pid(s.id), signal.SIGKILL)
        wait_for(lambda: client.get(s.id).generation == 3 and client.get(s.id).state == "RUNNING")
        assert time.monotonic() - t >= 1.0  # the second rebuild waited its back-off
        os.kill(init_pid(s.id), signal.SIGKILL)
        info = wait_for(lambda: (lambda i: i if "not rebuilt" in i.stop_reason else None)(client.get(s.id)))
        assert info.state == "STOPPED" and "max_rebuilds 2" in info.stop_reason, info.stop_reason
    finally:
        try:
            s.delete()
        except Exception:
            pass
        for x in client.list_snapshots(s.id):
            client.delete_snapshot(x.id)
