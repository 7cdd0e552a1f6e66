"""Exec (bidi streaming): order, stdin, signals, back-pressure, terminals."""

import re
import signal
import threading
import time

import pytest


def test_output_arrives_in_order(sandbox):
    with sandbox.exec_stream(["seq", "1", "1000"]) as st:
        assert st.pid > 1
        out, err, exit = st.collect()
    assert exit.code == 0 and exit.signal == 0
    assert err == b""
    assert out.decode().split("\n")[:-1] == [str(i) for i in range(1, 1001)]


def test_interleaved_streams_keep_their_own_order(sandbox):
    script = "i=1; while [ $i -le 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done"
    with sandbox.exec_stream(["/bin/sh", "-c", script]) as st:
        out, err, exit = st.collect()
    assert exit.code == 0
    assert out.decode().split() == ["o%d" % i for i in range(1, 301)]
    assert err.decode().split() == ["e%d" % i for i in range(1, 301)]


def test_stdin_from_another_thread(sandbox):
    st = sandbox.exec_stream(["/bin/sh", "-c", "while read l; do echo \"<$l>\"; done; echo done"], stdin=True)

    def feed():
        for i in range(50):
            st.send_stdin(f"line{i}\n")
        st.close_stdin()

    t = threading.Thread(target=feed)
    t.start()
    out, _, exit = st.collect()
    t.join()
    assert exit.code == 0
    assert out.decode().splitlines() == [f"<line{i}>" for i in range(50)] + ["done"]


def test_interactive_turns(sandbox):
    """Answers arrive before the next question is sent: output is not held back."""
    with sandbox.exec_stream(["/bin/sh", "-c", "while read l; do echo \"got $l\"; done"], stdin=True) as st:
        for word in ("one", "two", "three"):
            st.send_stdin(word + "\n")
            chunk = next(st)
            assert chunk.stream == "stdout" and chunk.data == f"got {word}\n".encode()
        st.close_stdin()
        assert st.wait().code == 0


def test_signal_ends_command(sandbox):
    with sandbox.exec_stream(["/bin/sh", "-c", "echo ready; exec sleep 100"]) as st:
        assert next(st).data == b"ready\n"
        t = time.monotonic()
        st.signal(signal.SIGTERM)
        exit = st.wait()
    assert exit.signal == signal.SIGTERM
    assert time.monotonic() - t < 10


def test_stream_timeout(sandbox):
    with sandbox.exec_stream(["sleep", "30"], timeout_ms=300) as st:
        exit = st.wait()
    assert exit.timed_out and exit.signal == signal.SIGKILL


def test_back_pressure_bounds_daemon_memory(daemon, sandbox):
    """1 GiB of output read slowly: the daemon's memory stays bounded (flow
    control stalls the command instead of buffering)."""
    rss_before = daemon.rss_bytes()
    peak = rss_before
    got = 0
    with sandbox.exec_stream(["head", "-c", "1G", "/dev/zero"]) as st:
        for chunk in st:
            got += len(chunk.data)
            if got >= 32 << 20:
                break
        # Stop reading for a while: a daemon without flow control would now
        # pull the whole GiB into memory.
        for _ in range(10):
            time.sleep(0.2)
            peak = max(peak, daemon.rss_bytes())
        # Read a bit more, slowly.
        for chunk in st:
            got += len(chunk.data)
            if got >= 64 << 20:
                break
            if got % (4 << 20) < len(chunk.data):
                time.sleep(0.05)
                peak = max(peak, daemon.rss_bytes())
        st.cancel()
    assert got >= 64 << 20
    assert peak - rss_before < 200 << 20, f"airlockd grew by {(peak - rss_before) >> 20} MiB"
    # The abandoned command is killed; the sandbox still works.
    deadline = time.monotonic() + 10
    while True:
        ps = sandbox.exec(["/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout
        if b"head -c 1G" not in ps:
            break
        assert time.monotonic() < deadline, "head -c 1G still runs after the caller left: " + ps.decode()
        time.sleep(0.2)


def read_until(st, pattern, timeout=10.0):
    """Reads a tty stream until `pattern` (regex, bytes) matches what arrived."""
    buf = b""
    deadline = time.monotonic() + timeout
    for chunk in st:
        buf += chunk.data
        m = re.search(pattern, buf)
        if m:
            return m, buf
        assert time.monotonic() < deadline, f"no {pattern!r} in {buf!r}"
    raise AssertionError(f"stream ended without {pattern!r}: {buf!r}")


def test_tty(sandbox):
    with sandbox.exec_stream(["tty"], tty=True, rows=24, cols=80) as st:
        out, err, exit = st.collect()
    assert exit.code == 0, out
    assert re.fullmatch(rb"/dev/pts/\d+\r?\n", out), out
    assert err == b""


def test_tty_size_and_resize(sandbox):
    with sandbox.exec_stream(["/bin/sh", "-c", "stty size; read x; stty size"], tty=True, rows=24, cols=80) as st:
        read_until(st, rb"24 80")
        st.resize(40, 100)
        st.send_stdin(b"go\n")
        read_until(st, rb"40 100")
        assert st.wait().code == 0


def test_tty_sigwinch(sandbox):
    script = "trap 'stty size' WINCH; echo armed; while :; do sleep 0.05; done"
    with sandbox.exec_stream(["/bin/sh", "-c", script], tty=True, rows=10, cols=20) as st:
        read_until(st, rb"armed")
        st.resize(33, 77)
        read_until(st, rb"33 77")
        st.signal(signal.SIGKILL)
        assert st.wait().signal == signal.SIGKILL


def test_exec_stream_missing_program_and_errors(sandbox, client):
    import dataclasses

    from airlock_client import NotFound, Session
    with sandbox.exec_stream(["/no/such/binary"]) as st:
        out, err, exit = st.collect()
    assert out == b"" and err == b""
    assert exit.code == 127 and "ENOENT" in exit.exec_error, exit
    ghost = Session(client, dataclasses.replace(sandbox.info, id="sb-000000000000"))
    with pytest.raises(NotFound) as e:
        ghost.exec_stream(["true"])
    assert "sb-000000000000" in e.value.message
