"""Background processes (StartProcess and friends) and PTY processes."""

import re
import signal
import time

import pytest

from airlock_client import FailedPrecondition, NotFound, PtyProcess


def drain(session, proc, until=None, timeout=10.0):
    """Reads a process's output until eof (or until the regex `until` matches stdout)."""
    out, err = b"", b""
    deadline = time.monotonic() + timeout
    while True:
        r = session.read_output(proc, wait_ms=500)
        out += r.stdout
        err += r.stderr
        if until is not None and re.search(until, out):
            return out, err, r
        if r.eof:
            return out, err, r
        assert time.monotonic() < deadline, f"no end after {timeout}s; stdout so far {out!r}"


def test_background_stdin_and_output(sandbox):
    p = sandbox.start_process(["/bin/sh", "-c", "read x; echo got $x; echo bye >&2"], stdin=True)
    assert p.pid > 1 and p.process_id
    st = sandbox.process_status(p)
    assert st.running and st.exit is None
    # Nothing yet: it waits for its line.
    r = sandbox.read_output(p, wait_ms=200)
    assert r.stdout == b"" and not r.eof
    sandbox.write_stdin(p, b"hello\n")
    out, err, last = drain(sandbox, p)
    assert out == b"got hello\n"
    assert err == b"bye\n"
    assert last.eof and not last.status.running
    assert last.status.exit is not None and last.status.exit.code == 0
    assert p.process_id in [q.process_id for q in sandbox.list_processes()]


def test_close_stdin(sandbox):
    p = sandbox.start_process(["wc", "-c"], stdin=True)
    sandbox.write_stdin(p, b"12345")
    sandbox.close_stdin(p)
    out, _, last = drain(sandbox, p)
    assert out.strip() == b"5"
    assert last.status.exit.code == 0


def test_stdin_needs_stdin_flag(sandbox):
    p = sandbox.start_process(["sleep", "5"])
    with pytest.raises(FailedPrecondition):
        sandbox.write_stdin(p, b"x")
    sandbox.kill(p)


def test_kill(sandbox):
    p = sandbox.start_process(["sleep", "100"])
    t = time.monotonic()
    sandbox.kill(p)
    _, _, last = drain(sandbox, p)
    assert time.monotonic() - t < 10
    assert last.status.exit.signal == signal.SIGKILL
    assert not last.status.running
    ps = sandbox.exec(["/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout
    assert b"sleep 100" not in ps


def test_signal_term(sandbox):
    p = sandbox.start_process(["/bin/sh", "-c", "trap 'echo term; exit 4' TERM; echo up; while :; do sleep 0.05; done"])
    drain(sandbox, p, until=rb"up\n")
    sandbox.signal(p, signal.SIGTERM)
    out, _, last = drain(sandbox, p)
    assert b"term" in out
    assert last.status.exit.code == 4


def test_missing_program_in_background(sandbox):
    p = sandbox.start_process(["/no/such/binary"])
    _, _, last = drain(sandbox, p)
    assert last.eof and last.status.exit is not None
    assert last.status.exit.code == 127 and "ENOENT" in last.status.exit.exec_error, last


def test_unknown_process(sandbox):
    with pytest.raises(NotFound):
        sandbox.read_output("p999999")


def test_output_buffered_while_nobody_reads(sandbox):
    p = sandbox.start_process(["seq", "1", "20000"])
    deadline = time.monotonic() + 10
    while sandbox.process_status(p).running:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out, _, last = drain(sandbox, p)
    assert out.decode().split() == [str(i) for i in range(1, 20001)]
    assert last.eof


def test_pty_process(sandbox):
    p = sandbox.pty_start(["/bin/sh", "-c", "tty; stty size"], rows=30, cols=120)
    assert isinstance(p, PtyProcess) and p.tty
    out, err, last = drain(sandbox, p)
    assert re.search(rb"/dev/pts/\d+", out), out
    assert b"30 120" in out, out
    assert err == b""
    assert last.status.exit.code == 0


def test_pty_interactive_shell(sandbox):
    p = sandbox.pty_start(["/bin/sh"], rows=24, cols=80)
    sandbox.write_stdin(p, b"echo $((6*7))x\n")
    drain(sandbox, p, until=rb"42x")
    sandbox.write_stdin(p, b"exit 3\n")
    _, _, last = drain(sandbox, p)
    assert last.eof and last.status.exit.code == 3
