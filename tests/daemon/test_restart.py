"""kill -9 of airlockd mid-exec, then a restart on the same state dir.

Two designs pass the common tests, each checked for what it promises:
- sandboxes end with their daemon (inits see their channels close): the
  restarted daemon reports the old sandbox STOPPED with a stop_reason and
  removes what it left on the host;
- sandboxes outlive the daemon (a keeper holds their channels; re-attach):
  the restarted daemon reports it RUNNING and it still works, its files and
  background processes intact.
Either way the exec in flight fails and new sandboxes work. The re-attach
tests are skipped, saying so, for a daemon that doesn't re-attach.
"""

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from airlock_client import AirlockError, BackgroundProcess, FailedPrecondition, NotFound, SandboxInfo, Session
from conftest import Daemon, TrackingClient, find_cgroups


@dataclass
class Crash:
    daemon: Daemon
    client: TrackingClient
    sandbox_id: str
    background: BackgroundProcess
    stream_errors: list = field(default_factory=list)
    stream_hung: bool = False
    info: SandboxInfo = None  # the old sandbox as the restarted daemon reports it


@pytest.fixture(scope="module")
def crash(base_dir) -> Iterator[Crash]:
    d = Daemon(base_dir, "restart")
    d.start()
    try:
        c = d.client()
        s = c.create(labels={"test": "restart"})
        s.write("before.txt", b"written before the crash")
        bg = s.start_process(["sleep", "301"])
        stream = s.exec_stream(["/bin/sh", "-c", "echo running; exec sleep 302"])
        assert next(stream).data == b"running\n"
        result = Crash(d, c, s.id, bg)

        def reader():
            try:
                stream.wait()
            except AirlockError as e:
                result.stream_errors.append(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        d.kill9()
        t.join(15)
        result.stream_hung = t.is_alive()
        c.close()

        d.start()
        result.client = d.client()
        result.info = result.client.get(s.id)
        yield result
        result.client.close()
    finally:
        if d.proc is not None and d.proc.poll() is not None:
            d.start()  # it died in a test: let it adopt what it left, to clean up
        d.destroy_all()
        status = d.stop()
    assert status == 0, d.log_tail()
    left = d.leftovers()
    assert not left, left


def reattached(crash: Crash) -> Session:
    if crash.info.state != "RUNNING":
        pytest.skip(f"this daemon does not re-attach: the old sandbox is {crash.info.state} "
                    f"({crash.info.stop_reason})")
    return crash.client.resume(crash.sandbox_id)


def running_commands(session: Session) -> bytes:
    return session.exec(["/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout


def test_exec_in_flight_fails(crash):
    assert not crash.stream_hung, "the exec stream did not end when the daemon died"
    assert crash.stream_errors, "the exec stream ended without an error"
    assert crash.stream_errors[0].code in ("UNAVAILABLE", "CANCELLED", "INTERNAL", "UNKNOWN"), crash.stream_errors


def test_old_sandbox_after_restart(crash):
    c, info = crash.client, crash.info
    if info.state == "STOPPED":
        assert info.stop_reason, info
        with pytest.raises(FailedPrecondition):
            Session(c, info).exec(["true"])
        with pytest.raises(FailedPrecondition):
            c.resume(crash.sandbox_id)
        assert crash.sandbox_id in {x.id for x in c.list(include_stopped=True)}
        assert crash.sandbox_id not in {x.id for x in c.list()}
        # What the old sandbox had on the host is gone: its processes and cgroups.
        deadline = time.monotonic() + 10
        while find_cgroups({f"airlock-{crash.sandbox_id}"}):
            assert time.monotonic() < deadline, find_cgroups({f"airlock-{crash.sandbox_id}"})
            time.sleep(0.2)
        assert not list(os.scandir(os.path.join(crash.daemon.state_dir, "sandboxes")))
    else:
        assert info.state == "RUNNING", info
        old = c.resume(crash.sandbox_id)
        assert old.read("before.txt") == b"written before the crash"
        assert old.exec(["cat", "before.txt"]).stdout == b"written before the crash"
        # The background process had no caller left: its output pipes went
        # with the daemon and no handle names it any more. The new daemon
        # ends what the old one ran, as for any caller that leaves.
        assert b"sleep 301" not in running_commands(old)
        assert crash.sandbox_id in {x.id for x in c.list()}


def test_new_sandbox_after_restart(crash):
    n = crash.client.create(labels={"test": "after-restart"})
    assert n.exec(["echo", "fine"]).stdout == b"fine\n"
    assert n.delete().state == "DESTROYED"


def test_reattach_ends_orphaned_exec(crash):
    """The Exec whose caller went away with the daemon must not run on,
    unreachable: a caller that leaves takes its command along."""
    old = reattached(crash)
    deadline = time.monotonic() + 5
    while b"sleep 302" in running_commands(old):
        assert time.monotonic() < deadline, \
            "the interrupted exec still runs after re-attach: " + running_commands(old).decode()
        time.sleep(0.2)


def test_reattach_never_reuses_process_ids(crash):
    """A process handle from before the crash must never name another process."""
    old = reattached(crash)
    new = old.start_process(["echo", "new process"])
    assert new.process_id != crash.background.process_id, \
        f"process id {crash.background.process_id} handed out again after re-attach"
    try:
        seen = old.read_output(crash.background, wait_ms=300)
    except NotFound:
        return
    assert b"new process" not in seen.stdout, seen
