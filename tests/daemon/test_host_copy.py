"""Manifest host_copy entries: host files copied into the sandbox's writable
layer before it starts, read with the *caller's* access.

What the sandbox sees is checked from inside; what the caller couldn't read
on the host is refused, naming the file, with nothing created.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from airlock_client import PermissionDenied

NOBODY = 65534

CHILD = r"""
import sys
from airlock_client import AirlockClient, AirlockError
with AirlockClient(sys.argv[1]) as c:
    try:
        c.create(manifest={"entries": [{"path": "in", "host_copy": sys.argv[2]}]})
        print("CREATED")
    except AirlockError as e:
        print(e.code, e.message)
"""


@pytest.fixture
def tree(daemon):
    root = os.path.join(daemon.allow_roots[0], f"copy-{os.getpid()}-{os.urandom(3).hex()}")
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "a.txt"), "w") as f:
        f.write("alpha\n")
    with open(os.path.join(root, "sub", "b.txt"), "w") as f:
        f.write("beta\n")
    os.symlink("/etc/shadow", os.path.join(root, "link"))
    os.chmod(os.path.join(root, "a.txt"), 0o4755)  # setuid: stripped in the copy
    return root


def test_a_copied_tree_is_in_the_writable_layer(client, tree):
    s = client.create(manifest={"entries": [{"path": "in", "host_copy": tree}]})
    try:
        r = s.exec(["sh", "-c", "cat in/a.txt in/sub/b.txt; stat -c '%a %u' in/a.txt; readlink in/link; "
                                "test -L in/link && echo is-link"])
        assert r.stdout.decode().splitlines() == ["alpha", "beta", "755 0", "/etc/shadow", "is-link"], r
        # Writes inside change the copy, not the host.
        s.exec(["sh", "-c", "echo changed > in/a.txt; rm in/sub/b.txt"])
        assert open(os.path.join(tree, "a.txt")).read() == "alpha\n"
        assert os.path.exists(os.path.join(tree, "sub", "b.txt"))
    finally:
        s.delete()


def test_a_single_file(client, tree):
    s = client.create(manifest={"entries": [{"path": "one.txt", "host_copy": os.path.join(tree, "sub", "b.txt")}]})
    try:
        assert s.read("one.txt") == b"beta\n"
    finally:
        s.delete()


def test_outside_the_allowed_roots(client):
    with pytest.raises(PermissionDenied) as e:
        client.create(manifest={"entries": [{"path": "x", "host_copy": "/etc"}]})
    assert "create.manifest.entries[0].host_copy" in e.value.message


def test_the_caller_s_access_is_what_counts(daemon, tree):
    # A root-only file in a tree another caller may otherwise read: that
    # caller's copy fails on it, naming it; root's would succeed.
    secret = os.path.join(tree, "sub", "secret")
    with open(secret, "w") as f:
        f.write("root only\n")
    os.chmod(secret, 0o600)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", CHILD, daemon.socket, tree], env=env, capture_output=True, text=True,
                       preexec_fn=lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY)), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("PERMISSION_DENIED"), r.stdout
    assert "EACCES" in r.stdout and secret in r.stdout
