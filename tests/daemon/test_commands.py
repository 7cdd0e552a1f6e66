"""Run (the unary exec): what the sandboxed program sees, and how it ended."""

import os
import signal
import time

import pytest

from airlock_client import InvalidArgument


def sh(session, script, **kw):
    return session.exec(["/bin/sh", "-c", script], **kw)


def test_identity_inside(client):
    s = client.create(hostname="agent-box")
    try:
        r = sh(s, "id -u; id -g; hostname; pwd")
        assert r.ok, r
        assert r.stdout.decode().split("\n")[:4] == ["0", "0", "agent-box", s.workspace]
        # PID 1 is the sandbox's own init, not the host's.
        r = s.exec(["cat", "/proc/1/cmdline"])
        argv0 = r.stdout.split(b"\0")[0]
        assert os.path.basename(argv0) == b"airlock-init", r.stdout
        with open("/proc/1/cmdline", "rb") as f:
            assert f.read() != r.stdout
        # A fresh pid namespace: only init, its spawner and this command.
        r = sh(s, "ls /proc | grep -c '^[0-9][0-9]*$'")
        assert int(r.stdout) < 10, r.stdout
        # Root inside is not root outside: the kernel maps it to the sandbox's range.
        r = s.exec(["cat", "/proc/self/uid_map"])
        first = r.stdout.split()
        assert first[0] == b"0" and first[1] != b"0", r.stdout
        # As another user.
        r = s.exec(["id", "-u"], user="1234")
        assert r.stdout == b"1234\n"
        r = s.exec(["id", "-g"], user="1234:99")
        assert r.stdout == b"99\n"
    finally:
        s.delete()


def test_exit_codes_and_signals(sandbox):
    assert sh(sandbox, "exit 0").exit_code == 0
    r = sh(sandbox, "exit 3")
    assert (r.exit_code, r.signal, r.timed_out, r.reported_by) == (3, 0, False, "init")
    r = sh(sandbox, "kill -TERM $$")
    assert r.signal == signal.SIGTERM and not r.timed_out
    r = sh(sandbox, "kill -KILL $$")
    assert r.signal == signal.SIGKILL and not r.timed_out and not r.oom_killed
    r = sh(sandbox, "exit 255")
    assert r.exit_code == 255


def test_missing_program_is_an_exit_status(sandbox):
    # The proto: a command that never ran has exit.exec_error ("exec: ENOENT ...").
    r = sandbox.exec(["/no/such/program"])
    assert r.exit_code == 127 and r.signal == 0 and not r.ok
    assert "ENOENT" in r.exec_error, r
    r = sandbox.exec(["/etc/hostname"])  # not executable
    assert r.exit_code == 126 and "EACCES" in r.exec_error, r
    r = sandbox.exec(["true"], cwd="/no/such/dir")
    assert r.exec_error and "ENOENT" in r.exec_error, r


def test_bad_command_fields_are_named(sandbox):
    with pytest.raises(InvalidArgument) as e:
        sandbox.exec([])
    assert "run.command.argv" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        sandbox.exec(["true"], user="nosuchuser")
    assert "run.command.user" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        sandbox.exec(["true"], env={"A=B": "x"})
    assert "run.command.env" in e.value.message


def test_stdout_and_stderr_are_separate(sandbox):
    r = sh(sandbox, "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 7")
    assert r.stdout == b"out1\nout2\n"
    assert r.stderr == b"err1\nerr2\n"
    assert r.exit_code == 7


def test_env_and_cwd(sandbox):
    r = sh(sandbox, 'echo "$FOO|$PATH"; pwd', env={"FOO": "bar baz"}, cwd="/tmp")
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("bar baz|") and "/usr/bin" in lines[0]
    assert lines[1] == "/tmp"
    # Relative cwd is under the workspace.
    sandbox.mkdir("sub/dir", parents=True)
    assert sh(sandbox, "pwd", cwd="sub/dir").stdout.decode().strip() == sandbox.workspace + "/sub/dir"


def test_timeout_kills(sandbox):
    t = time.monotonic()
    r = sh(sandbox, "echo started; sleep 30; echo never", timeout_ms=500)
    elapsed = time.monotonic() - t
    assert r.timed_out
    assert r.signal == signal.SIGKILL
    assert r.stdout == b"started\n"
    assert elapsed < 10, elapsed
    # Nothing of it is left running.
    ps = sh(sandbox, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert b"sleep 30" not in ps.stdout


def test_stdin_round_trip(sandbox):
    data = os.urandom(1 << 20)
    r = sandbox.exec(["cat"], stdin=data)
    assert r.exit_code == 0
    assert r.stdout == data
    r = sandbox.exec(["wc", "-l"], stdin=b"a\nb\nc\n")
    assert r.stdout.strip() == b"3"
    # No stdin given: the command reads EOF at once.
    r = sandbox.exec(["cat"], timeout_ms=5000)
    assert not r.timed_out and r.stdout == b""


def test_output_bound(sandbox):
    r = sandbox.exec(["head", "-c", "3000000", "/dev/zero"], max_output_bytes=1 << 20)
    assert r.exit_code == 0
    assert len(r.stdout) == 1 << 20 and r.stdout_truncated and not r.stderr_truncated
    r = sandbox.exec(["head", "-c", "1000", "/dev/zero"])
    assert len(r.stdout) == 1000 and not r.truncated
    with pytest.raises(InvalidArgument) as e:
        sandbox.exec(["true"], max_output_bytes=65 << 20)
    assert "run.max_output_bytes" in e.value.message


def test_string_command_runs_in_shell(sandbox):
    r = sandbox.exec("echo $((6 * 7)) | tr 4 x")
    assert r.stdout == b"x2\n"
