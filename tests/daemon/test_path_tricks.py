"""File calls resolve paths inside the sandbox: symlinks, /proc magic links and
`..` never reach the host's files."""

import os
import secrets
import uuid

import pytest

from airlock_client import AirlockError


def inside(session, script):
    r = session.exec(["/bin/sh", "-c", script])
    assert r.exit_code == 0, r
    return r.stdout


@pytest.fixture
def host_secret():
    """A file on the host with content nobody inside could guess."""
    path = f"/tmp/airlock-host-secret-{uuid.uuid4().hex}"
    content = b"HOST-SECRET-" + secrets.token_hex(16).encode()
    with open(path, "wb") as f:
        f.write(content)
    yield path, content
    os.unlink(path)


def read_or_error(session, path):
    try:
        return session.read(path)
    except AirlockError as e:
        return e


def test_symlink_to_etc_reads_the_sandbox_file(fresh):
    inside(fresh, "echo sandbox-own-hostname-$$ > /etc/hostname")
    inside(fresh, "ln -s / /workspace/root && ln -s /etc/hostname /workspace/hn")
    theirs = inside(fresh, "cat /etc/hostname")
    assert fresh.read("/workspace/hn") == theirs
    assert fresh.read("hn") == theirs
    assert fresh.read("/workspace/root/etc/hostname") == theirs
    with open("/etc/hostname", "rb") as f:
        assert f.read() != theirs


def test_host_files_stay_out_of_reach(fresh, host_secret):
    path, content = host_secret
    inside(fresh, "ln -s / /workspace/root")
    assert inside(fresh, f"test -e {path} || echo absent") == b"absent\n"
    tricks = [
        path,
        "/workspace/root" + path,
        "/proc/1/root" + path,
        "/proc/self/root" + path,
        "/proc/1/cwd/../../.." + path,
        "../../../../.." + path,
        "/workspace/../../.." + path,
    ]
    for trick in tricks:
        got = read_or_error(fresh, trick)
        assert got != content and (isinstance(got, AirlockError) or content not in got), trick
    shadow = open("/etc/shadow", "rb").read() if os.path.exists("/etc/shadow") else None
    for trick in ("/etc/shadow", "/proc/1/root/etc/shadow", "/workspace/root/etc/shadow", "root/etc/shadow"):
        got = read_or_error(fresh, trick)
        if shadow is not None and not isinstance(got, AirlockError):
            assert got != shadow, trick
    # A symlink inside pointing at the host path resolves inside, too.
    inside(fresh, f"ln -s {path} /workspace/sneaky")
    got = read_or_error(fresh, "sneaky")
    assert isinstance(got, AirlockError) and got.code == "NOT_FOUND", got


def test_dotdot_stays_inside(fresh):
    theirs = inside(fresh, "cat /etc/hostname")
    assert fresh.read("../../../../etc/hostname") == theirs
    # A write through .. or a symlink to / lands in the sandbox's /tmp, not the host's.
    name = f"airlock-dotdot-{uuid.uuid4().hex}"
    fresh.write(f"../../../tmp/{name}", b"via-dotdot")
    inside(fresh, "ln -sfn / /workspace/root")
    fresh.write(f"/workspace/root/tmp/{name}-2", b"via-link")
    assert inside(fresh, f"cat /tmp/{name} /tmp/{name}-2") == b"via-dotdotvia-link"
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/tmp/{name}-2")
    fresh.mkdir(f"/workspace/root/tmp/{name}-dir")
    assert not os.path.exists(f"/tmp/{name}-dir")
    assert inside(fresh, f"test -d /tmp/{name}-dir && echo yes") == b"yes\n"


def test_proc_is_the_sandboxes(fresh):
    cmdline = fresh.read("/proc/1/cmdline")
    assert os.path.basename(cmdline.split(b"\0")[0]) == b"airlock-init"
    assert fresh.read("/proc/sys/kernel/hostname").strip() == inside(fresh, "hostname").strip()


def test_a_symlink_swapped_while_the_daemon_reads_never_reaches_the_host(fresh):
    """A loop inside flips /workspace/swap between /etc and a directory of
    its own while the file API reads through it: every read resolves inside
    the sandbox (its /etc/hostname or its own file), never to the host's."""
    host_hostname = open("/etc/hostname", "rb").read()
    fresh.exec(["sh", "-c", "mkdir -p /workspace/mine && echo mine > /workspace/mine/hostname"])
    inside_hostname = fresh.read("/etc/hostname")
    assert host_hostname != inside_hostname
    flipper = fresh.start_process(["sh", "-c", "while :; do ln -sfn /etc /workspace/swap; "
                                              "ln -sfn /workspace/mine /workspace/swap; done"])
    try:
        seen = set()
        for _ in range(200):
            try:
                seen.add(fresh.read("/workspace/swap/hostname"))
            except Exception:
                pass  # caught between unlink and symlink: ENOENT
        assert seen <= {inside_hostname, b"mine\n"}, seen
        assert host_hostname not in seen
    finally:
        fresh.kill(flipper)
